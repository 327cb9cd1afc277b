"""String tensors and text features."""

from compiler.ops.onnx_semantics import onnx_ops

onnx_ops("text", ["StringConcat", "StringNormalizer", "StringSplit", "RegexFullMatch", "TfIdfVectorizer"])
