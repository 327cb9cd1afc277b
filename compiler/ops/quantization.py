"""Quantization: (de)quantize, dynamic quantization and integer Conv/MatMul."""

from dataclasses import replace

from compiler.ops.onnx_semantics import infer_with_schema, onnx_ops, onnx_reference_kernel
from compiler.ops.registry import OpDef, register

onnx_ops("quantization", ["DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"])


def _reference_from_19(node, input_types: list, present: list):
    """onnx.reference implements QuantizeLinear/DequantizeLinear from opset 19 on; versions 10 and 13 are
    its subset (8-bit and int32 types, no saturate, no block_size), so they run the opset-19 code."""
    return onnx_reference_kernel(replace(node, version=max(node.version or 19, 19)), input_types, present)


for _name in ("QuantizeLinear", "DequantizeLinear"):
    register(OpDef(_name, "", "quantization", infer_with_schema, _reference_from_19))
