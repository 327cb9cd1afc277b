"""kiln::QuantizedAdd: Q([Relu](DQ(a) + DQ(b))) on 8-bit tensors, as one elementwise pass.

The fuse-quantized-add pass (compiler/passes/fuse_quantized_add.py) builds it from the residual
additions of QDQ graphs, which would otherwise run two DequantizeLinear, the Add and a QuantizeLinear
over the whole tensor. It computes what those nodes compute, in the same float32 steps:
y = clamp(rint(((a - a_zero_point) * a_scale + (b - b_zero_point) * b_scale) / y_scale) + y_zero_point,
low, high), so results are bit-identical to the unfused graph; a Relu between the Add and the
QuantizeLinear is the clamp's `low` (y_zero_point: quantization is monotone and maps 0 to it).
b has a's shape or a's last dims (it repeats along the others); the result has a's shape.
Attributes: a_scale, b_scale, y_scale (float32 values), a_zero_point, b_zero_point, y_zero_point,
low, high (ints), output_dtype ("uint8" / "int8"), fused_nodes.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ir.types import TensorType
from compiler.ops.registry import OpDef, register


def _dequantized(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (x.astype(np.int32) - zero_point).astype(np.float32) * np.float32(scale)


def _reference(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    attrs = node.attrs
    total = _dequantized(a, attrs["a_scale"], attrs["a_zero_point"]) + _dequantized(b, attrs["b_scale"],
                                                                                     attrs["b_zero_point"])
    rounded = np.rint(total / np.float32(attrs["y_scale"])) + np.float32(attrs["y_zero_point"])
    return np.clip(rounded, attrs["low"], attrs["high"]).astype(attrs["output_dtype"])


def _infer(node: Node, input_types: list, input_values: list) -> list:
    a = input_types[0]
    return [None if a is None else TensorType(node.attrs["output_dtype"], a.shape)]


def _kernel(node: Node, input_types: list, present: list):
    return lambda inputs: [_reference(node, *inputs)]


register(OpDef("QuantizedAdd", KILN_DOMAIN, "quantized_add", _infer, _kernel))
