"""Signal processing: DFT and STFT."""

from dataclasses import replace

from compiler.ir.graph import Node
from compiler.ops.onnx_semantics import infer_with_schema, onnx_ops, onnx_reference_kernel
from compiler.ops.registry import OpDef, register

onnx_ops("signal", ["DFT"])


def _infer_stft(node: Node, input_types: list, input_values: list) -> list:
    """onnx's STFT shape inference reads an absent `onesided` as 0; the spec's default (and the
    reference kernel's) is 1, so the default is spelled out before inferring."""
    if "onesided" not in node.attrs:
        node = replace(node, attrs={**node.attrs, "onesided": 1})
    return infer_with_schema(node, input_types, input_values)


register(OpDef("STFT", "", "signal", _infer_stft, onnx_reference_kernel))
