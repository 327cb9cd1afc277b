"""Quantization: (de)quantize, dynamic quantization and integer Conv/MatMul."""

from compiler.ops.onnx_semantics import onnx_ops

onnx_ops("quantization", ["QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                          "QLinearMatMul", "MatMulInteger", "ConvInteger"])
