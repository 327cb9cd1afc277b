"""kiln::QuantizedConv and kiln::QuantizedMatMul: 8-bit Conv / MatMul with int32 sums and a requantizing epilogue.

The fuse-quantized-linear pass (compiler/passes/fuse_quantized_linear.py) builds them from
DequantizeLinear -> Conv | MatMul | Gemm [-> Relu | Clip] [-> QuantizeLinear]; the cpu kernels are
compiler/codegen/llvm/kernels/int8_conv.py (int8_depthwise.py) and int8_gemm.py. Inputs, all but x constant:
- x: uint8 or int8 activations (Conv: [N, C, H, W]; MatMul: [..., M, K]). int8 is computed as
  uint8 x + 128 (the zero point moves with it), since the dot-product instructions take u8 x s8;
- w: int8 weights packed for the kernels (symmetric: their zero point is 0):
  Conv [M, K4], row m = W[m] in (kernel row, kernel column, input channel) order with the channels
  of each tap padded with zeros to a multiple of 4; MatMul [K4 / 4, Np, 4], w[t, n, i] = B[4t + i, n]
  (K padded to K4 = a multiple of 4, columns to Np = a multiple of 64, with zeros);
- offset: int32 per output channel (MatMul: per column, Np of them): the int32 bias minus the input
  zero point (shifted for int8) times the channel's weight sum, so that
  acc = sum_k x_u8[k] * w[k] + offset = sum_k (x - x_zero_point)[k] * w[k] + bias exactly;
- multiplier: float32 per output channel (Np for MatMul): s_x * s_w[c] / s_y for an 8-bit output,
  s_x * s_w[c] (and Gemm's alpha) for a float32 output.
Attributes: `x_zero_point` (int: the padding value of Conv), `output_dtype` ("uint8", "int8",
"float32", or "int32": the sums themselves, as ConvInteger/MatMulInteger give them), `low`/`high`
(the clamp: ints in the output type for 8-bit outputs, a fused Relu or Clip narrowing them;
optional floats for float32 outputs), `y_zero_point` (8-bit outputs), `isa` (the
kernel's instruction set, int8_isa.py), `fused_nodes`; Conv: kernel_shape, strides, pads,
dilations, group (2-D); MatMul: `columns` (N).

Requantization is in float32, as ONNX Runtime's MLAS does: y = clamp(rint(float32(acc) *
multiplier) + y_zero_point, low, high). onnx.reference takes the product in float64 and the
float graph rounds its float convolution, so results can differ from them by 1 LSB.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ir.types import TensorType
from compiler.ops.registry import OpDef, register

# MatMul weight columns (and their offsets and multipliers) are padded to a multiple of this: the widest int8
# tile's columns (int8_isa.py: 4 vectors of 16 lanes), which the last column block reads whole.
VECTOR_COLUMNS = 64
SHIFT = {"uint8": 0, "int8": 128}  # added to x so that it is unsigned


def round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def pack_conv_weights(weights: np.ndarray) -> np.ndarray:
    """W [M, C/group, kh, kw] (int8) -> [M, kh * kw * C4] in (tap, channel) order, channels padded to C4."""
    channels = weights.shape[1]
    taps_last = np.moveaxis(weights, 1, -1)
    padded = np.zeros((*taps_last.shape[:-1], round_up(channels, 4)), np.int8)
    padded[..., :channels] = taps_last
    return padded.reshape(weights.shape[0], -1)


def unpack_conv_weights(packed: np.ndarray, channels: int, kernel: tuple) -> np.ndarray:
    blocked = packed.reshape(packed.shape[0], *kernel, -1)[..., :channels]
    return np.moveaxis(blocked, -1, 1)


def pack_matmul_weights(weights: np.ndarray) -> np.ndarray:
    """B [K, N] (int8) -> [K4 / 4, Np, 4] (zeros in the padding)."""
    k, n = weights.shape
    padded = np.zeros((round_up(k, 4), round_up(n, VECTOR_COLUMNS)), np.int8)
    padded[:k, :n] = weights
    return np.ascontiguousarray(padded.reshape(-1, 4, padded.shape[1]).transpose(0, 2, 1))


def unpack_matmul_weights(packed: np.ndarray, depth: int, columns: int) -> np.ndarray:
    return packed.transpose(0, 2, 1).reshape(-1, packed.shape[1])[:depth, :columns]


def requantize(acc: np.ndarray, multiplier: np.ndarray, attrs: dict) -> np.ndarray:
    """The epilogue on int32 sums (channels on the axis `multiplier` broadcasts along)."""
    dtype = attrs["output_dtype"]
    if dtype == "int32":
        return acc.astype(np.int32)
    scaled = acc.astype(np.float32) * multiplier
    if dtype == "float32":
        return np.clip(scaled, attrs.get("low", -np.inf), attrs.get("high", np.inf)).astype(np.float32)
    rounded = np.rint(scaled).astype(np.int64) + attrs["y_zero_point"]
    return np.clip(rounded, attrs["low"], attrs["high"]).astype(dtype)


def _shifted(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) + SHIFT[x.dtype.name]


def _exact(values: np.ndarray) -> np.ndarray:
    """float64 sums of 8-bit products are exact integers (far below 2^53); wrap them to int32 as the kernels do."""
    return values.astype(np.int64).astype(np.int32)


def conv_output_shape(node: Node, x_shape: tuple, channels: int) -> tuple:
    kernel, strides = node.attrs["kernel_shape"], node.attrs["strides"]
    pads, dilations = node.attrs["pads"], node.attrs["dilations"]
    spatial = [(size + pads[i] + pads[i + 2] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
               for i, size in enumerate(x_shape[2:])]
    return (x_shape[0], channels, *spatial)


def _conv_reference(node: Node, x: np.ndarray, packed: np.ndarray, offset: np.ndarray,
                    multiplier: np.ndarray) -> np.ndarray:
    attrs, group = node.attrs, node.attrs["group"]
    kernel, strides, dilations = attrs["kernel_shape"], attrs["strides"], attrs["dilations"]
    channels = x.shape[1] // group
    out_shape = conv_output_shape(node, x.shape, packed.shape[0])
    pads = attrs["pads"]
    padded = np.pad(_shifted(x), [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])],
                    constant_values=attrs["x_zero_point"] + SHIFT[x.dtype.name])
    weights = unpack_conv_weights(packed, channels, tuple(kernel)).astype(np.float64)
    per_group = packed.shape[0] // group
    acc = np.zeros(out_shape, np.float64)
    for kh in range(kernel[0]):
        for kw in range(kernel[1]):
            rows = kh * dilations[0] + strides[0] * np.arange(out_shape[2])
            cols = kw * dilations[1] + strides[1] * np.arange(out_shape[3])
            window = padded[:, :, rows][:, :, :, cols]
            for g in range(group):
                w = weights[g * per_group:(g + 1) * per_group, :, kh, kw]
                acc[:, g * per_group:(g + 1) * per_group] += np.einsum(
                    "oc,nchw->nohw", w, window[:, g * channels:(g + 1) * channels])
    total = _exact(acc) + offset.reshape(-1, 1, 1)
    return requantize(total, multiplier.reshape(-1, 1, 1), attrs)


def _matmul_reference(node: Node, x: np.ndarray, packed: np.ndarray, offset: np.ndarray,
                      multiplier: np.ndarray) -> np.ndarray:
    columns = node.attrs["columns"]
    weights = unpack_matmul_weights(packed, x.shape[-1], columns).astype(np.float64)
    total = _exact(_shifted(x) @ weights) + offset[:columns]
    return requantize(total, multiplier[:columns], node.attrs)


def _infer(node: Node, input_types: list, input_values: list) -> list:
    x, w = input_types[:2]
    if x is None or w is None or x.shape is None:
        return [None]
    if node.op_type == "QuantizedConv":
        shape = conv_output_shape(node, x.shape, w.shape[0]) if all(isinstance(d, int) for d in x.shape[2:]) \
            else (x.shape[0], w.shape[0], None, None)
    else:
        shape = (*x.shape[:-1], node.attrs["columns"])
    return [TensorType(node.attrs["output_dtype"], shape)]


def _kernel(node: Node, input_types: list, present: list):
    reference = _conv_reference if node.op_type == "QuantizedConv" else _matmul_reference

    def kernel(inputs: list) -> list:
        return [reference(node, *inputs)]

    return kernel


for _op_type in ("QuantizedConv", "QuantizedMatMul"):
    register(OpDef(_op_type, KILN_DOMAIN, "quantized_linear", _infer, _kernel))
