"""DeformConv with 2 spatial dims: each kernel tap reads the input at its own learned offset.

A tap's sampling point moves by a per-(image, offset group, tap, output position) offset and is
read by bilinear interpolation, corners outside the input counting as zero (as onnx.reference's
GridSample with zero padding does); an optional mask scales each tap. A work item is (image,
group, block of output channels, output row, tile of output columns); it owns whole output
elements and sums into them in a fixed order, so results are the same for any thread count.

Per offset group the item first works out, for every (tap, column), the four corners' offsets
in an input plane and their weights (mask folded in, zero for corners outside, so every read
stays inside the plane). Per input channel it then samples every (tap, column) into a column
buffer (im2col), and adds weight * column into the block's accumulator rows, a few output
channels per pass; those innermost loops run along the tile's columns, contiguously, and
vectorize. Blocks are large (up to ACC_ELEMENTS accumulators), since sampling is the costly
part and every item samples anew.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.codegen.llvm.irhelpers import I64, const_i64, element_type, load, store
from compiler.codegen.llvm.kernels.conv_transpose import CHANNEL_BLOCKS, TAP_BLOCK, channel_block
from compiler.codegen.llvm.kernels.linear_algebra import (FLOATS, linear, multiply_add, rolled_range, smax, smin,
                                                          stack_buffer, unravel, zero_fill)
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

COLUMN_TILE = 64  # output columns per work item, at most
ACC_ELEMENTS = 4096  # accumulator budget (output channels x columns) of a work item
CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) steps from the sampling point's floor


@dataclass(frozen=True)
class DeformGeometry:
    dtype: str
    batch: int
    channels: int
    in_size: tuple[int, int]
    out_channels: int
    out_size: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int]  # leading
    group: int
    offset_group: int

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def in_group(self) -> int:
        return self.channels // self.group

    @property
    def out_group(self) -> int:
        return self.out_channels // self.group

    @property
    def in_offset_group(self) -> int:
        return self.channels // self.offset_group

    @property
    def columns(self) -> int:
        return min(COLUMN_TILE, self.out_size[1])

    @property
    def block(self) -> int:
        other_items = self.batch * self.group * self.out_size[0] * math.ceil(self.out_size[1] / self.columns)
        return channel_block(self.out_group, other_items, range(ACC_ELEMENTS // self.columns, 0, -1))

    @property
    def sub_block(self) -> int:
        """Output channels that share one pass over the sampled columns."""
        return next(size for size in CHANNEL_BLOCKS if self.block % size == 0)

    @property
    def item_dims(self) -> tuple[int, ...]:
        return (self.batch, self.group, self.out_group // self.block, self.out_size[0],
                math.ceil(self.out_size[1] / self.columns))


def _geometry(graph: Graph, node: Node) -> DeformGeometry:
    x_type, w_type = graph.input_types(node)[:2]
    attrs = node.attrs
    return DeformGeometry(x_type.dtype, x_type.shape[0], x_type.shape[1], tuple(x_type.shape[2:]), w_type.shape[0],
                          tuple(node.outputs[0].shape[2:]), tuple(w_type.shape[2:]),
                          tuple(attrs.get("strides", [1, 1])), tuple(attrs.get("dilations", [1, 1])),
                          tuple(attrs.get("pads", [0] * 4)[:2]), int(attrs.get("group", 1)),
                          int(attrs.get("offset_group", 1)))


def _check(graph: Graph, node: Node) -> str | None:
    types = graph.input_types(node)
    dtypes = {t.dtype for t in types if t is not None}
    if not dtypes <= set(FLOATS):
        return f"DeformConv on {', '.join(sorted(dtypes))} is not compiled by the cpu target (float32/float64 only)"
    x_shape, w_shape, offset_shape = (t.shape for t in types[:3])
    if len(x_shape) != 4:
        return f"DeformConv with {len(x_shape) - 2} spatial dims is not compiled by the cpu target (2 only)"
    g = _geometry(graph, node)
    if g.group < 1 or g.offset_group < 1 or g.channels % g.group or g.channels % g.offset_group \
            or g.out_channels % g.group or w_shape[1] != g.in_group:
        return (f"DeformConv group={g.group}, offset_group={g.offset_group} do not fit input {x_shape} "
                f"and weight {w_shape}")
    if list(node.attrs.get("kernel_shape", g.kernel)) != list(g.kernel):
        return f"DeformConv kernel_shape={node.attrs['kernel_shape']} differs from the weight's {list(g.kernel)}"
    if tuple(offset_shape) != (g.batch, 2 * g.offset_group * g.taps, *g.out_size):
        return f"DeformConv offset shape {offset_shape} is not {(g.batch, 2 * g.offset_group * g.taps, *g.out_size)}"
    mask = types[4] if len(types) > 4 else None
    if mask is not None and tuple(mask.shape) != (g.batch, g.offset_group * g.taps, *g.out_size):
        return f"DeformConv mask shape {mask.shape} is not {(g.batch, g.offset_group * g.taps, *g.out_size)}"
    return None


class _DeformConv:
    """Emits one work item loop; see the module docstring."""

    def __init__(self, ctx: KernelContext, geometry: DeformGeometry):
        self.ctx, self.b, self.g = ctx, ctx.builder, geometry
        self.x, self.w, self.offset, self.bias, self.mask = ctx.inputs + [None] * (5 - len(ctx.inputs))
        self.y = ctx.outputs[0]
        g, b = geometry, self.b
        self.value_type = element_type(g.dtype)
        self.plane = g.taps * g.columns  # elements of one (tap, column) table
        self.corner_index = stack_buffer(b, "int64", len(CORNERS) * self.plane)  # per (corner, tap, column)
        self.corner_weight = stack_buffer(b, g.dtype, len(CORNERS) * self.plane)
        self.sampled = stack_buffer(b, g.dtype, self.plane)
        self.acc = stack_buffer(b, g.dtype, g.block * g.columns)

    def run(self) -> None:
        b, g = self.b, self.g
        per_offset_group = const_i64(g.in_offset_group)
        with rolled_range(b, self.ctx.begin, self.ctx.end, name="item") as item:
            image, group, block, row, tile = unravel(b, item, g.item_dims)
            column0 = b.mul(tile, const_i64(g.columns))
            columns = smin(b, const_i64(g.columns), b.sub(const_i64(g.out_size[1]), column0))
            first_out = linear(b, [group, block], [g.out_group, g.block])
            zero_fill(b, self.acc, g.dtype, g.block * g.columns)
            first_in = b.mul(group, const_i64(g.in_group))
            end_in = b.add(first_in, const_i64(g.in_group))
            end_offset_group = b.add(b.udiv(b.sub(end_in, const_i64(1)), per_offset_group), const_i64(1))
            with rolled_range(b, b.udiv(first_in, per_offset_group), end_offset_group, name="og") as offset_group:
                self._corners(image, offset_group, row, column0, columns)
                low = smax(b, first_in, b.mul(offset_group, per_offset_group))
                high = smin(b, end_in, b.mul(b.add(offset_group, const_i64(1)), per_offset_group))
                with rolled_range(b, low, high, name="c") as channel:
                    plane_size = math.prod(g.in_size)
                    self._sample(linear(b, [image, channel], [g.channels * plane_size, plane_size]), columns)
                    weights = linear(b, [first_out, b.sub(channel, first_in)], [g.in_group * g.taps, g.taps])
                    for first in range(0, g.taps, TAP_BLOCK):
                        self._accumulate(weights, range(first, min(first + TAP_BLOCK, g.taps)), columns)
            self._store(image, first_out, row, column0, columns)

    def _corners(self, image, offset_group, row, column0, columns) -> None:
        """For each (tap, column): the four corners' offsets in an input plane and their weights."""
        b, g = self.b, self.g
        out_plane = math.prod(g.out_size)
        one, zero = float_constant(self.value_type, 1.0), float_constant(self.value_type, 0.0)
        with rolled_range(b, 0, g.kernel[0], name="kh") as kh, rolled_range(b, 0, g.kernel[1], name="kw") as kw:
            tap = linear(b, [kh, kw], [g.kernel[1], 1])
            map_channel = linear(b, [image, offset_group, tap], [g.offset_group * g.taps, g.taps, 1])  # of the mask
            with rolled_range(b, 0, columns, name="col") as column:
                out_column = b.add(column0, column)
                position = linear(b, [row, out_column], [g.out_size[1], 1])
                point = []
                for axis, (coordinate, tap_coordinate) in enumerate(((row, kh), (out_column, kw))):
                    start = linear(b, [coordinate, tap_coordinate], [g.strides[axis], g.dilations[axis]],
                                   const_i64(-g.pads[axis]))
                    at = linear(b, [map_channel, position], [2 * out_plane, 1], const_i64(axis * out_plane))
                    offset = load(b, self.offset.ptr, g.dtype, at)
                    point.append(b.fadd(b.sitofp(start, self.value_type), offset))
                floor = [intrinsic(b, "floor", p) for p in point]
                fraction = [b.fsub(p, f) for p, f in zip(point, floor)]
                corner = [self._clamped_index(f, size) for f, size in zip(floor, g.in_size)]
                at = linear(b, [map_channel, position], [out_plane, 1])
                scale = one if self.mask is None else load(b, self.mask.ptr, g.dtype, at)
                entry = linear(b, [tap, column], [g.columns, 1])
                for number, steps in enumerate(CORNERS):
                    (corner_row, corner_column) = (b.add(c, const_i64(step)) for c, step in zip(corner, steps))
                    inside = b.and_(b.icmp_unsigned("<", corner_row, const_i64(g.in_size[0])),  # negatives wrap
                                    b.icmp_unsigned("<", corner_column, const_i64(g.in_size[1])))
                    weight = scale
                    for step, part in zip(steps, fraction):
                        weight = b.fmul(weight, part if step else b.fsub(one, part))
                    target = b.add(entry, const_i64(number * self.plane))
                    index = linear(b, [corner_row, corner_column], [g.in_size[1], 1])
                    store(b, b.select(inside, index, const_i64(0)), self.corner_index, "int64", target)
                    store(b, b.select(inside, weight, zero), self.corner_weight, g.dtype, target)

    def _clamped_index(self, floor, size: int):
        """floor as an i64, clamped to [-2, size + 1] first so that inf and NaN give corners outside."""
        b, value_type = self.b, self.value_type
        low = intrinsic(b, "maxnum", floor, float_constant(value_type, -2.0))  # maxnum(NaN, -2) = -2
        return b.fptosi(intrinsic(b, "minnum", low, float_constant(value_type, size + 1.0)), I64)

    def _sample(self, plane, columns) -> None:
        """sampled[tap, column] = the bilinear sample of this input channel (im2col)."""
        b, g = self.b, self.g
        with rolled_range(b, 0, g.taps, name="tap") as tap, rolled_range(b, 0, columns, name="scol") as column:
            entry = linear(b, [tap, column], [g.columns, 1])
            total = float_constant(self.value_type, 0.0)
            for number in range(len(CORNERS)):
                target = b.add(entry, const_i64(number * self.plane))
                value = load(b, self.x.ptr, g.dtype, b.add(plane, load(b, self.corner_index, "int64", target)))
                total = multiply_add(b, load(b, self.corner_weight, g.dtype, target), value, total)
            store(b, total, self.sampled, g.dtype, entry)

    def _accumulate(self, weights, taps: range, columns) -> None:
        """acc[r, column] += sum over the taps of w[first_out + r, channel, tap] * sampled[tap, column],
        sub_block channels r at a time."""
        b, g = self.b, self.g
        with rolled_range(b, 0, g.block, g.sub_block, name="r0") as r0:
            first = b.add(weights, b.mul(r0, const_i64(g.in_group * g.taps)))
            w_values = [[load(b, self.w.ptr, g.dtype, b.add(first, const_i64(r * g.in_group * g.taps + tap)))
                         for tap in taps] for r in range(g.sub_block)]
            rows = b.mul(r0, const_i64(g.columns))
            with rolled_range(b, 0, columns, name="acol") as column:
                values = [load(b, self.sampled, g.dtype, b.add(column, const_i64(tap * g.columns))) for tap in taps]
                for r in range(g.sub_block):
                    index = linear(b, [rows, column], [1, 1], const_i64(r * g.columns))
                    total = load(b, self.acc, g.dtype, index)
                    for weight, value in zip(w_values[r], values):
                        total = multiply_add(b, weight, value, total)
                    store(b, total, self.acc, g.dtype, index)

    def _store(self, image, first_out, row, column0, columns) -> None:
        b, g, y = self.b, self.g, self.y
        with rolled_range(b, 0, g.block, name="r") as r:
            channel = b.add(first_out, r)
            bias = None if self.bias is None else load(b, self.bias.ptr, g.dtype, channel)
            out = linear(b, [image, channel, row, column0], y.strides)
            with rolled_range(b, 0, columns, name="ocol") as column:
                value = load(b, self.acc, g.dtype, linear(b, [r, column], [g.columns, 1]))
                store(b, value if bias is None else b.fadd(value, bias), y.ptr, y.dtype, b.add(out, column))


def _emit(ctx: KernelContext) -> None:
    _DeformConv(ctx, _geometry(ctx.graph, ctx.node)).run()


register_kernel(KernelSpec(("DeformConv",), _check, lambda graph, node: math.prod(_geometry(graph, node).item_dims),
                           _emit))
