"""Optimizer update rules from ai.onnx.preview.training (pure functions of their inputs).

`Gradient` is left out: it needs the whole training graph, which an inference compiler does not keep.
"""

from compiler.ops.onnx_semantics import onnx_ops

onnx_ops("training", ["Adagrad", "Adam", "Momentum"], domain="ai.onnx.preview.training")
