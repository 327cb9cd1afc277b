"""Sequence and optional values: build, index, insert, erase, split to and concatenate from sequences."""

from compiler.ops.onnx_semantics import onnx_ops

SEQUENCES = ["SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
             "SequenceLength", "SplitToSequence", "ConcatFromSequence"]
OPTIONALS = ["Optional", "OptionalGetElement", "OptionalHasElement"]

onnx_ops("sequence", SEQUENCES + OPTIONALS)
