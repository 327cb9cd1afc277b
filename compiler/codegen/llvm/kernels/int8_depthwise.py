"""kiln::QuantizedConv with one input channel per group (depthwise, MobileNet's 3x3 layers).

The GEMM form (int8_conv.py) would pad each group's single channel to 4 and fill one row of a
register tile, so depthwise convolutions get their own loop. A work item is a block of output rows
of one output channel: it stages the input rows they read into a stack buffer, once for all of
them, as uint8 (int8 shifted) with the padding and rows outside the image holding the input zero
point, so every tap reads a byte; each staged row is split into `stride` phases (the bytes at
columns phase, phase + stride, ...), so a tap reads consecutive bytes for consecutive output
columns. Then one loop per output row over its columns, which LLVM vectorizes, sums
offset + x * w over the taps in int32 (exact, like the GEMM form: the offset already removes the
zero point's share) and requantizes each sum (int8_isa.Requantize on scalars).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I8, I32, const_i64, load, store
from compiler.codegen.llvm.kernels.int8_isa import Requantize
from compiler.codegen.llvm.kernels.linear_algebra import rolled_range, smin, stack_buffer, unravel
from compiler.codegen.llvm.kernels.registry import KernelContext
from compiler.ops.quantized_linear import SHIFT

BLOCK_ROWS = 8  # output rows per work item, at most


def is_depthwise(channels_per_group: int) -> bool:
    return channels_per_group == 1


@dataclass(frozen=True)
class Staging:
    """The staged rows of one work item: `rows` rows of `stride` phases of `phase_pitch` bytes."""

    block: int  # output rows per item
    rows: int
    stride: int
    phase_pitch: int
    pad_left: int

    @property
    def row_pitch(self) -> int:
        return self.stride * self.phase_pitch

    def index(self, row: int, column: int) -> tuple[int, int]:
        """(byte offset of a staged row and phase, column step) of padded column `column` of staged row `row`."""
        phase, step = column % self.stride, column // self.stride
        return row * self.row_pitch + phase * self.phase_pitch, step


def staging(attrs: dict, width: int, out_height: int, out_width: int) -> Staging:
    (stride_h, stride_w), (dilation_h, dilation_w) = attrs["strides"], attrs["dilations"]
    kernel_height, kernel_width = attrs["kernel_shape"]
    block = min(BLOCK_ROWS, out_height)
    reach = (out_width - 1) * stride_w + (kernel_width - 1) * dilation_w + 1  # padded columns read
    columns = max(attrs["pads"][1] + width, reach)
    return Staging(block, (block - 1) * stride_h + (kernel_height - 1) * dilation_h + 1, stride_w,
                   math.ceil(columns / stride_w), attrs["pads"][1])


def work_items(batch: int, out_channels: int, out_height: int) -> int:
    return batch * out_channels * math.ceil(out_height / min(BLOCK_ROWS, out_height))


def emit(ctx: KernelContext) -> None:
    b, attrs = ctx.builder, ctx.node.attrs
    x, weights, offsets, multipliers = ctx.inputs
    out = ctx.outputs[0]
    batch, channels, height, width = x.shape
    _, out_channels, out_height, out_width = out.shape
    kernel_height, kernel_width = attrs["kernel_shape"]
    stride_h, (dilation_h, dilation_w) = attrs["strides"][0], attrs["dilations"]
    plan = staging(attrs, width, out_height, out_width)
    padding = ir.Constant(I8, (attrs["x_zero_point"] + SHIFT[x.dtype]) & 0xFF)
    buffer = stack_buffer(b, "uint8", plan.rows * plan.row_pitch)
    requantize = Requantize(attrs, None)
    taps = kernel_height * kernel_width
    blocks = math.ceil(out_height / plan.block)
    with rolled_range(b, ctx.begin, ctx.end, name="item") as item:
        image, channel, block = unravel(b, item, (batch, out_channels, blocks))
        first_row = b.mul(block, const_i64(plan.block))
        source = b.add(b.mul(image, const_i64(channels)), b.udiv(channel, const_i64(out_channels // channels)))
        top = b.sub(b.mul(first_row, const_i64(stride_h)), const_i64(attrs["pads"][0]))
        _stage(b, x, buffer, plan, padding, top, b.mul(source, const_i64(height * width)))
        tap_weights = [b.sext(load(b, weights.ptr, "int8", b.add(b.mul(channel, const_i64(taps * 4)),
                                                                    const_i64(tap * 4))), I32) for tap in range(taps)]
        offset = load(b, offsets.ptr, "int32", channel)
        multiplier = load(b, multipliers.ptr, "float32", channel)
        plane = b.mul(b.add(b.mul(image, const_i64(out_channels)), channel), const_i64(out_height * out_width))
        last = smin(b, b.add(first_row, const_i64(plan.block)), const_i64(out_height))
        with rolled_range(b, first_row, last, name="out_row") as out_row:
            staged_row = b.mul(b.sub(out_row, first_row), const_i64(stride_h * plan.row_pitch))
            first = b.add(plane, b.mul(out_row, const_i64(out_width)))
            with rolled_range(b, 0, out_width, name="column") as column:
                total = ir.Constant(I32, 0)
                for tap, weight in enumerate(tap_weights):
                    kh, kw = divmod(tap, kernel_width)
                    at, step = plan.index(kh * dilation_h, kw * dilation_w)
                    byte = load(b, buffer, "uint8", b.add(staged_row, b.add(column, const_i64(at + step))))
                    total = b.add(total, b.mul(b.zext(byte, I32), weight, flags=["nsw"]), flags=["nsw"])
                store(b, requantize(b, total, offset, multiplier), out.ptr, out.dtype, b.add(first, column))


def _stage(b: ir.IRBuilder, x, buffer: ir.Value, plan: Staging, padding: ir.Value, top: ir.Value,
           plane: ir.Value) -> None:
    """The item's input rows from `top` (input row coordinates; outside the image: the zero point) into
    `buffer`, each row's padded columns split into phases."""
    _, _, height, width = x.shape
    with rolled_range(b, 0, plan.rows * plan.row_pitch, name="fill") as i:
        store(b, padding, buffer, "uint8", i)
    with rolled_range(b, 0, plan.rows, name="stage_row") as row:
        in_row = b.add(top, row)
        with b.if_then(b.icmp_unsigned("<", in_row, const_i64(height))):  # negatives wrap
            source = b.add(plane, b.mul(in_row, const_i64(width)))
            target = b.mul(row, const_i64(plan.row_pitch))
            for phase in range(plan.stride):  # input columns c with (c + pad_left) % stride == phase
                first = (phase - plan.pad_left) % plan.stride
                count = max(0, math.ceil((width - first) / plan.stride))
                start = b.add(target, const_i64(phase * plan.phase_pitch + (first + plan.pad_left) // plan.stride))
                with rolled_range(b, 0, count, name="copy") as j:
                    column = b.add(b.mul(j, const_i64(plan.stride)), const_i64(first))
                    byte = load(b, x.ptr, x.dtype, b.add(source, column))
                    store(b, b.xor(byte, ir.Constant(I8, 0x80)) if SHIFT[x.dtype] else byte, buffer, "uint8",
                          b.add(start, j))
