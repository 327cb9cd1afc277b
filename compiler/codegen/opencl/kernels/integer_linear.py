"""MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv on the integer GEMM template
(integer_gemm.cl.j2): 8-bit operands, int32 sums, the QLinear ops requantized exactly as the cpu
target does (compiler/codegen/llvm/kernels/integer_linear.py), i.e. as onnx.reference does:
y = saturate(rint(sum * m) + y_zero_point) with the multiplier m = s_in * s_w / s_y rounded in
the scales' dtype and the product taken in float64.

A MatMul is A (rows) by B (columns), batch dims broadcast; a Conv is an implicit GEMM per group
with the weights as A and the input seen as im2col as B (linear.py's ConvShape), padding read as
the input's zero point. The weight zero point and scale may be per output channel (Conv) or per
column of B (MatMul); the input's are one value.

The multiplier of constant scales (every QDQ model's) is computed here with numpy and written into
the kernel; with run-time scales the kernel computes it, the division in double where the device
has cl_khr_fp64 (so the quotient is rounded once, as numpy's is) and in float elsewhere, where
OpenCL lets a division be 2.5 ulp off. The float64 product and its rounding are done in integer
arithmetic (`kiln_requantize`), which rounds exactly as double does on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from compiler.codegen.opencl.kernels.linear import conv_problem, conv_shape, matmul_shape
from compiler.codegen.opencl.kernels.registry import (NAME, GpuContext, GpuKernelSpec, KernelLaunch, Tensor,
                                                      register_gpu_kernel)
from compiler.ir.graph import Graph, Node

EIGHT_BITS = {"int8": "char4", "uint8": "uchar4"}  # operand dtypes and their 4-wide vector types
SCALES = ("float16", "float32")
MAX_WRITTEN_MULTIPLIERS = 4096  # more per-channel multipliers than this are computed in the kernel

REQUANTIZE = ("kiln_requantize", """\
inline ulong kiln_shift_round(const ulong x, const int shift)
{
  const ulong kept = x >> shift, rest = x & ((1UL << shift) - 1), halfway = 1UL << (shift - 1);
  return kept + (rest > halfway || (rest == halfway && (kept & 1)));
}
inline int kiln_requantize(const int total, const float multiplier, const int zero_point, const int low, const int high)
{
  const uint bits = as_uint(multiplier), exponent = (bits >> 23) & 0xFF;
  const int negative = (total < 0) != (int)(bits >> 31);
  if (exponent == 0xFF) return ((bits & 0x7FFFFF) || total == 0 || negative) ? low : high;
  const ulong mantissa = exponent ? (bits & 0x7FFFFF) | 0x800000 : bits & 0x7FFFFF;
  const int shift = (exponent ? (int)exponent : 1) - 150;
  ulong p = (ulong)abs(total) * mantissa;
  const int excess = 11 - (int)clz(p);
  if (excess > 0) p = kiln_shift_round(p, excess) << excess;
  long magnitude;
  if (shift >= 0) magnitude = p == 0 ? 0 : (shift >= 20 || p >= (1UL << 20)) ? (1L << 20) : (long)(p << shift);
  else magnitude = shift < -60 ? 0 : (long)kiln_shift_round(p, -shift);
  return (int)clamp((negative ? -magnitude : magnitude) + zero_point, (long)low, (long)high);
}
""")
DIVIDE = ("kiln_scale_divide", """\
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
inline float kiln_scale_divide(const float a, const float b) { return (float)((double)a / (double)b); }
#else
inline float kiln_scale_divide(const float a, const float b) { return a / b; }
#endif
""")


@dataclass(frozen=True)
class Signature:
    """Input positions of one op: (x or A, w or B), their zero points, scales (x, w, y), y zero point, bias."""

    data: tuple[int, int]
    zero_points: tuple[int, int]
    scales: tuple[int, int, int] | None = None
    y_zero_point: int | None = None
    bias: int | None = None


SIGNATURES = {"MatMulInteger": Signature((0, 1), (2, 3)), "ConvInteger": Signature((0, 1), (2, 3)),
              "QLinearMatMul": Signature((0, 3), (2, 5), (1, 4, 6), 7),
              "QLinearConv": Signature((0, 3), (2, 5), (1, 4, 6), 7, 8)}


def _present(ctx: GpuContext, index: int | None) -> bool:
    return index is not None and ctx.input_type(index) is not None


def _constant(ctx: GpuContext, index: int) -> np.ndarray | None:
    return ctx.graph.constant_value(ctx.graph.input_values(ctx.node)[index])


class _Operands:
    """The kernel's parameters beyond A and B, and the C expressions reading them."""

    def __init__(self, ctx: GpuContext):
        self.ctx, self.params = ctx, []

    def tensor(self, index: int, name: str) -> Tensor:
        tensor = self.ctx.input(index, name)
        self.params.append(tensor)
        return tensor

    def zero_point(self, index: int, name: str, at: str) -> str:
        """Zero point input `index` at per-channel index `at` as an int expression ("0" when absent or all 0)."""
        if not _present(self.ctx, index):
            return "0"
        value = _constant(self.ctx, index)
        if value is not None and not value.any():
            return "0"
        tensor = self.tensor(index, name)
        return f"(int){self.ctx.dialect.load(name, at if tensor.size > 1 else '0', tensor.dtype)}"

    def multiplier(self, indices: tuple[int, int, int], at: str) -> tuple[str, list[float]]:
        """(the float expression of s_in * s_w[at] / s_y, the written per-channel values it reads)."""
        ctx, d = self.ctx, self.ctx.dialect
        dtype = max((ctx.input_type(i).dtype for i in indices), key=SCALES.index)
        values = [_constant(ctx, i) for i in indices]
        if all(v is not None for v in values):
            x, w, y = (np.asarray(v).astype(dtype).reshape(-1) for v in values)
            written = (x * w / y).astype(np.float32)
            if written.size == 1:
                return d.literal(written[0], "float32"), []
            if written.size <= MAX_WRITTEN_MULTIPLIERS:
                return f"{NAME}_multipliers[{at}]", [d.literal(v, "float32") for v in written]
        x, w, y = (self._scale(i, name, at) for i, name in zip(indices, ("sx", "sw", "sy")))
        product = self._rounded(f"({x} * {w})", dtype)
        return self._rounded(d.call(*DIVIDE, product, y), dtype), []

    def _scale(self, index: int, name: str, at: str) -> str:
        tensor = self.tensor(index, name)
        return self.ctx.dialect.load(name, at if tensor.size > 1 else "0", tensor.dtype)

    def _rounded(self, expr: str, dtype: str) -> str:
        """A float expression rounded to `dtype` (half scales compute in half) and back to float."""
        d = self.ctx.dialect
        return expr if dtype == "float32" else d.convert(d.convert(expr, "float32", dtype), dtype, "float32")


def _side(tensor: Tensor, load: str, k_fast: bool, vector_load: str | None) -> dict:
    return {"ctype": tensor.ctype, "load": load, "k_fast": k_fast, "vector": vector_load is not None,
            "vector_load": vector_load or "", "vector_type": EIGHT_BITS[tensor.dtype]}


def _kernel(ctx: GpuContext, a: Tensor, b: Tensor, sides: tuple[dict, dict], sizes: tuple[int, int, int],
            batch: list[int], bases: dict, y_offset: str, channel: str, conv: dict | None) -> KernelLaunch:
    """The kernel of `ctx.node`; `channel` indexes its per-channel operands (a Conv's output channel,
    a MatMul's column of B)."""
    node, d = ctx.node, ctx.dialect
    signature = SIGNATURES[node.op_type]
    is_conv = conv is not None
    operands = _Operands(ctx)
    x_zero = operands.zero_point(signature.zero_points[0], "zx", "0")
    w_zero = operands.zero_point(signature.zero_points[1], "zw", channel)
    za, zb = (w_zero, x_zero) if is_conv else (x_zero, w_zero)
    y = ctx.output(0, "y")
    lines, result, multipliers = [], "total", []
    if signature.scales is not None:
        if _present(ctx, signature.bias):
            operands.tensor(signature.bias, "bias")
            lines.append(f"total += {d.load('bias', channel, 'int32')};")
        multiplier, multipliers = operands.multiplier(signature.scales, channel)
        out_zero = operands.zero_point(signature.y_zero_point, "zy", "0")
        low, high = np.iinfo(y.dtype).min, np.iinfo(y.dtype).max
        result = f"({y.ctype}){d.call(*REQUANTIZE, 'total', multiplier, out_zero, str(low), str(high))}"
    rows, columns, depth = sizes
    tile = ctx.planner.gemm_tile(rows, columns, element_bytes=1)
    tile = tile if tile.tk % 4 == 0 else replace(tile, tk=4)
    params = [a, b] + operands.params + [y]
    return ctx.kernel("integer_gemm.cl.j2", params, ctx.planner.gemm(tile, rows, columns, math.prod(batch)),
                      tile=tile, M=rows, N=columns, K=depth, batch=batch, a=sides[0], b=sides[1], conv=conv,
                      y_offset=y_offset, pad=x_zero if is_conv else "0", za=za, zb=zb, row_sums=zb != "0",
                      column_sums=za != "0", epilogue=lines, result=result, multipliers=multipliers,
                      bases=[{"name": key, "value": text} for key, text in bases.items()])


def _matmul(ctx: GpuContext) -> list[KernelLaunch]:
    signature = SIGNATURES[ctx.node.op_type]
    a, b = ctx.input(signature.data[0], "a"), ctx.input(signature.data[1], "b")
    (m, n, k), batch, bases = matmul_shape(a.shape, b.shape)
    d = ctx.dialect
    vector = f"vload4(0, a + a_batch + m * {k} + k)" if k % 4 == 0 else None
    sides = (_side(a, d.load("a", f"base + m * {k} + k", a.dtype), True, vector),
             _side(b, d.load("b", f"base + k * {n} + n", b.dtype), False, None))
    return [_kernel(ctx, a, b, sides, (m, n, k), batch, bases, f"base + m * {n} + n", "n", None)]


def _conv(ctx: GpuContext) -> list[KernelLaunch]:
    signature = SIGNATURES[ctx.node.op_type]
    x, w = ctx.input(signature.data[0], "b"), ctx.input(signature.data[1], "a")
    g = conv_shape(ctx.node, x.shape, w.shape, ctx.node.outputs[0].shape)
    d = ctx.dialect
    vector = f"vload4(0, a + a_batch + m * {g.depth} + k)" if g.depth % 4 == 0 else None
    sides = (_side(w, d.load("a", f"base + m * {g.depth} + k", w.dtype), True, vector),
             _side(x, d.load("b", f"base + {g.image_offset()}", x.dtype), False, None))
    bases = {**g.bases(), "c_batch": f"q0 * {g.out_group}"}
    return [_kernel(ctx, w, x, sides, (g.out_group, g.images * g.positions, g.depth), [g.group], bases,
                    g.y_offset(), "c_batch + m", g.template)]


def _check(graph: Graph, node: Node) -> str | None:
    op, signature = node.op_type, SIGNATURES[node.op_type]
    types = graph.input_types(node)

    def at(index: int | None):
        return types[index] if index is not None and index < len(types) else None

    x, w = (at(i) for i in signature.data)
    if x.dtype not in EIGHT_BITS or w.dtype not in EIGHT_BITS:
        return f"{op} on {x.dtype} x {w.dtype} is not compiled by the gpu target (int8/uint8 only)"
    is_conv = "Conv" in op
    problem = conv_problem(node, x, w) if is_conv else None
    if problem:
        return problem
    channels = w.shape[0] if is_conv else (w.shape[-1] if len(w.shape) > 1 else 1)
    what = "output channels" if is_conv else "columns of B"
    scales = signature.scales or (None, None, None)
    for name, value_type, per_channel in (("input zero point", at(signature.zero_points[0]), False),
                                          ("weight zero point", at(signature.zero_points[1]), True),
                                          ("input scale", at(scales[0]), False), ("weight scale", at(scales[1]), True),
                                          ("output scale", at(scales[2]), False),
                                          ("output zero point", at(signature.y_zero_point), False),
                                          ("bias", at(signature.bias), True)):
        if value_type is not None and math.prod(value_type.shape) != 1 and \
                not (per_channel and value_type.shape == (channels,)):
            allowed = f"one value or {channels} ({what})" if per_channel else "one value"
            return f"{op} {name} of shape {list(value_type.shape)} is not compiled by the gpu target ({allowed})"
    if signature.scales and any(at(i).dtype not in SCALES for i in signature.scales):
        return f"{op} with {at(scales[0]).dtype} scales is not compiled by the gpu target (float16/float32 only)"
    out = node.outputs[0].dtype
    if signature.scales and out not in EIGHT_BITS:
        return f"{op} to {out} is not compiled by the gpu target (int8/uint8 only)"
    return None


register_gpu_kernel(GpuKernelSpec(("MatMulInteger", "QLinearMatMul"), _check, _matmul))
register_gpu_kernel(GpuKernelSpec(("ConvInteger", "QLinearConv"), _check, _conv))
