"""kiln::QuantizedConv with one input channel per group (depthwise, MobileNet's 3x3 layers).

The GEMM form (int8_conv.py) would pad each group's single channel to 4 and fill one row of a
register tile, so depthwise convolutions run the float depthwise kernel (depthwise_conv.py: rows
staged by stride phase, register blocks of rows x vectors) on float32 values: it stages x minus the
input zero point (padding: 0) and the weights as floats. That is exact: each product is at most
255 * 128 in magnitude and a kernel has at most MAX_TAPS taps, so every partial sum is an integer
below 2^24. The store pass turns the sum back into the int32 sum of the GEMM form,
sum x_u8 * w + offset = sum (x_u8 - zp_u8) * w + (offset + zp_u8 * sum w), and requantizes it
(int8_isa.Requantize on scalars), so results match the GEMM form and the reference bit for bit.
Kernels the float one does not specialise (more than MAX_TAPS taps, rows too wide to stage) take
the GEMM form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, I32, const_i64, load
from compiler.codegen.llvm.kernels import depthwise_conv
from compiler.codegen.llvm.kernels.conv_geometry import ConvGeometry
from compiler.codegen.llvm.kernels.int8_isa import Requantize
from compiler.codegen.llvm.kernels.linear_algebra import linear
from compiler.codegen.llvm.kernels.registry import KernelContext
from compiler.ops.quantized_linear import SHIFT

if TYPE_CHECKING:
    from compiler.codegen.llvm.kernels.int8_conv import ConvPlan

WEIGHT_STEP = 4  # bytes per tap in the packed weights (the GEMM form's channel quad; 3 of them zero)


def geometry(plan: ConvPlan) -> ConvGeometry:
    """The float depthwise kernel's view of the conv: float32 stage and sums, one input channel per group."""
    return ConvGeometry("float32", plan.batch, plan.group, plan.group * plan.out_group, plan.group,
                        (plan.height, plan.width), plan.kernel, (plan.out_height, plan.out_width), plan.strides,
                        plan.dilations, plan.pads)


def is_depthwise(plan: ConvPlan) -> bool:
    """Whether this kernel computes the conv (else the GEMM form does)."""
    return plan.channels == 1 and depthwise_conv.fits(geometry(plan))


def work_items(plan: ConvPlan) -> int:
    return depthwise_conv.work_items(geometry(plan))


class _Int8DepthwiseConv(depthwise_conv.DepthwiseConv):
    """The float kernel on zero-point-corrected 8-bit inputs and weights, with the requantizing store."""

    def __init__(self, ctx: KernelContext, g: ConvGeometry):
        super().__init__(ctx, g)
        attrs = ctx.node.attrs
        self.zero_point = attrs["x_zero_point"]
        self.shifted_zero_point = self.zero_point + SHIFT[self.x_dtype]  # what the offsets assume (x_u8's)
        self.offsets, self.multipliers = ctx.inputs[2].ptr, ctx.inputs[3].ptr
        self.requantize = Requantize(attrs, None)

    def _byte(self, channel: ir.Value, tap: int) -> ir.Value:
        """The int8 weight of tap `tap` of `channel`."""
        return load(self.b, self.w, "int8", linear(self.b, [channel], [math.prod(self.g.kernel) * WEIGHT_STEP],
                                                   const_i64(tap * WEIGHT_STEP)))

    def _weight(self, channel: ir.Value, tap: int) -> ir.Value:
        return self.b.sitofp(self._byte(channel, tap), F32)

    def _convert(self, value: ir.Value) -> ir.Value:
        b, lanes = self.b, value.type.count
        to_float = b.sitofp if self.x_dtype == "int8" else b.uitofp
        float_type = ir.VectorType(F32, lanes)
        return b.fsub(to_float(value, float_type), ir.Constant(float_type, [float(self.zero_point)] * lanes))

    def _finisher(self, channel: ir.Value) -> Callable[[ir.Value, ir.Value, ir.Value], ir.Value]:
        b = self.b
        weight_sum = ir.Constant(I32, 0)
        for tap in range(math.prod(self.g.kernel)):
            weight_sum = b.add(weight_sum, b.sext(self._byte(channel, tap), I32))
        correction = b.mul(weight_sum, ir.Constant(I32, self.shifted_zero_point))
        offset = b.add(load(b, self.offsets, "int32", channel), correction)
        multiplier = load(b, self.multipliers, "float32", channel)

        def finish(value: ir.Value, plane: ir.Value, column: ir.Value) -> ir.Value:
            return self.requantize(b, b.fptosi(value, I32), offset, multiplier)
        return finish


def emit(ctx: KernelContext, plan: ConvPlan) -> None:
    _Int8DepthwiseConv(ctx, geometry(plan)).run(ctx.begin, ctx.end)
