"""MatMulInteger, QLinearMatMul, ConvInteger and QLinearConv: int32 sums, exact requantization.

Each is an integer product sum_t lhs[row, t] * rhs[t, column] of zero-point-corrected 8-bit
values: for a MatMul lhs = A and rhs = B; for a Conv lhs = the weights (output channel x
(input channel, kernel tap)) and rhs = the im2col rows of the input (padding reads as zero).
A work item owns a tile of output rows (MatMul rows, Conv output channels) by output columns
(MatMul columns, Conv output positions), so results do not depend on the thread count. For
every KU reduction steps it stages KU rhs rows as int32 in a stack panel, then adds
lhs[r, t] * panel[t, :] into an int32 stack tile; the innermost loop runs over the panel's
contiguous columns, which LLVM vectorizes. The QLinear ops then requantize each sum as
onnx.reference does: y = saturate(rint(sum * (s_in * s_w / s_y) + y_zero_point)), the
multiplier rounded in the scales' dtype and the product taken in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F64, I32, const_i64, convert, load, store
from compiler.codegen.llvm.kernels.conv_geometry import ConvGeometry, conv_geometry
from compiler.codegen.llvm.kernels.linear_algebra import (GemmProblem, linear, matmul_problem, rolled_range, smax,
                                                          smin, stack_buffer, unravel, zero_fill)
from compiler.codegen.llvm.kernels.quantization import saturate_round
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, TensorArg, register_kernel
from compiler.ir.graph import Graph, Node

EIGHT_BITS = ("int8", "uint8")
SCALES = ("float16", "float32")
KU = 4  # reduction steps staged and added per pass over the tile
MATMUL_ROWS, MATMUL_COLUMNS = 8, 256  # MatMul tile
CONV_POSITIONS, CONV_COLUMNS = 512, 256  # Conv tile: output positions at most, of which columns per row

# Operand positions: (x or A, w or B), their zero points, scales (x, w, y), y zero point, bias.
_OPERANDS = {
    "MatMulInteger": dict(data=(0, 1), zero_points=(2, 3)),
    "ConvInteger": dict(data=(0, 1), zero_points=(2, 3)),
    "QLinearMatMul": dict(data=(0, 3), zero_points=(2, 5), scales=(1, 4, 6), y_zero_point=7),
    "QLinearConv": dict(data=(0, 3), zero_points=(2, 5), scales=(1, 4, 6), y_zero_point=7, bias=8),
}


def _operand(items: list, op_type: str, role: str, which: int = 0):
    positions = _OPERANDS[op_type].get(role)
    if positions is None:
        return None
    index = positions[which] if isinstance(positions, tuple) else positions
    return items[index] if index < len(items) else None


# ---- the shared tile loop ----

@dataclass(frozen=True)
class Tile:
    rows: int
    columns: int
    depth: int


class _TileSum:
    """acc[rows x columns] (int32) = sum_t lhs(r, t) * rhs[t, column]; `stage(t, offset)` writes rhs row t
    (zero point subtracted) to panel[offset:offset + columns]. Create before the item loop."""

    def __init__(self, b: ir.IRBuilder, tile: Tile):
        self.b, self.tile = b, tile
        self.acc = stack_buffer(b, "int32", tile.rows * tile.columns)
        self.panel = stack_buffer(b, "int32", KU * tile.columns)
        zero_fill(b, self.panel, "int32", KU * tile.columns)  # columns an edge tile never stages stay defined

    def run(self, lhs: Callable[[int, ir.Value], ir.Value], stage: Callable[[ir.Value, ir.Value], None]) -> None:
        b, tile = self.b, self.tile
        zero_fill(b, self.acc, "int32", tile.rows * tile.columns)
        full = tile.depth - tile.depth % KU
        for start, stop, step in ((0, full, KU), (full, tile.depth, 1)):
            if start == stop:
                continue
            with rolled_range(b, start, stop, step, name="t") as t0:
                steps = [b.add(t0, const_i64(u)) for u in range(step)]
                for u, t in enumerate(steps):
                    stage(t, const_i64(u * tile.columns))
                weights = [[lhs(r, t) for t in steps] for r in range(tile.rows)]
                with rolled_range(b, 0, tile.columns, name="q") as q:
                    values = [load(b, self.panel, "int32", b.add(q, const_i64(u * tile.columns))) for u in range(step)]
                    for r in range(tile.rows):
                        index = b.add(q, const_i64(r * tile.columns))
                        total = load(b, self.acc, "int32", index)
                        for weight, value in zip(weights[r], values):
                            total = b.add(total, b.mul(weight, value, flags=["nsw"]), flags=["nsw"])
                        store(b, total, self.acc, "int32", index)

    def value(self, row: int, column: ir.Value) -> ir.Value:
        return load(self.b, self.acc, "int32", self.b.add(column, const_i64(row * self.tile.columns)))


def _widened(b: ir.IRBuilder, arg: TensorArg, index: ir.Value) -> ir.Value:
    return convert(b, load(b, arg.ptr, arg.dtype, index), arg.dtype, "int32")


def _zero_point(b: ir.IRBuilder, arg: TensorArg | None, index: ir.Value) -> ir.Value:
    """Element `index` of a zero point as int32 (index 0 when it holds one value; 0 when absent)."""
    if arg is None:
        return ir.Constant(I32, 0)
    return _widened(b, arg, index if arg.size > 1 else const_i64(0))


class _Output:
    """Stores int32 sums, or for the QLinear ops requantizes them to the output type. Create it
    before the item loop: it loads the output zero point once."""

    def __init__(self, ctx: KernelContext):
        b, op_type = ctx.builder, ctx.node.op_type
        self.b, self.out = b, ctx.outputs[0]
        self.scales = [_operand(ctx.inputs, op_type, "scales", i) for i in range(3)] if "QLinear" in op_type else None
        self.bias = _operand(ctx.inputs, op_type, "bias")
        zero_point = _operand(ctx.inputs, op_type, "y_zero_point")
        self.offset = None if zero_point is None else \
            convert(b, load(b, zero_point.ptr, zero_point.dtype, const_i64(0)), zero_point.dtype, "float64")

    def bias_of(self, channel: ir.Value) -> ir.Value | None:
        return None if self.bias is None else load(self.b, self.bias.ptr, "int32", channel)

    def multiplier(self, channel: ir.Value) -> ir.Value | None:
        """s_in * s_w[channel] / s_y in the scales' dtype, as float64 (None for the Integer ops)."""
        if self.scales is None:
            return None
        b = self.b
        dtype = max((s.dtype for s in self.scales), key=SCALES.index)
        x, w, y = (convert(b, load(b, s.ptr, s.dtype, channel if s.size > 1 else const_i64(0)), s.dtype, dtype)
                   for s in self.scales)
        return convert(b, b.fdiv(b.fmul(x, w), y), dtype, "float64")

    def store(self, total: ir.Value, bias: ir.Value | None, multiplier: ir.Value | None, index: ir.Value) -> None:
        b, out = self.b, self.out
        if bias is not None:
            total = b.add(total, bias)
        if multiplier is None:
            store(b, total, out.ptr, "int32", index)
            return
        scaled = b.fmul(b.sitofp(total, F64), multiplier)
        store(b, saturate_round(b, scaled, self.offset, out.dtype), out.ptr, out.dtype, index)


# ---- MatMulInteger / QLinearMatMul ----

def _matmul(graph: Graph, node: Node) -> tuple[GemmProblem, Tile]:
    a, b = (_operand(graph.input_types(node), node.op_type, "data", i) for i in range(2))
    problem = matmul_problem("int32", a.shape, b.shape)
    return problem, Tile(max(1, min(MATMUL_ROWS, problem.m)), max(1, min(MATMUL_COLUMNS, problem.n)), problem.k)


def _matmul_items(graph: Graph, node: Node) -> int:
    p, tile = _matmul(graph, node)
    return math.prod(p.batch) * math.ceil(p.m / tile.rows) * math.ceil(p.n / tile.columns)


def _emit_matmul(ctx: KernelContext) -> None:
    b, (p, tile) = ctx.builder, _matmul(ctx.graph, ctx.node)
    a, w = (_operand(ctx.inputs, ctx.node.op_type, "data", i) for i in range(2))
    a_zero, w_zero = (_operand(ctx.inputs, ctx.node.op_type, "zero_points", i) for i in range(2))
    output, tiles = _Output(ctx), _TileSum(b, tile)
    a_offset = _zero_point(b, a_zero, const_i64(0))
    per_column = output.scales is not None and output.scales[1].size > 1
    with rolled_range(b, ctx.begin, ctx.end, name="item") as item:
        blocks = (math.ceil(p.m / tile.rows), math.ceil(p.n / tile.columns))
        *batch, row_block, column_block = unravel(b, item, p.batch + blocks)
        i0, j0 = b.mul(row_block, const_i64(tile.rows)), b.mul(column_block, const_i64(tile.columns))
        rows = smin(b, const_i64(tile.rows), b.sub(const_i64(p.m), i0))
        columns = smin(b, const_i64(tile.columns), b.sub(const_i64(p.n), j0))
        # rows past the edge re-read the last row (in bounds); their sums are dropped
        a_rows = [linear(b, [*batch, smin(b, b.add(i0, const_i64(r)), const_i64(p.m - 1))], p.a.batch + (p.a.row,))
                  for r in range(tile.rows)]
        b_base = linear(b, [*batch, j0], p.b.batch + (p.b.col,))

        def lhs(r: int, t: ir.Value) -> ir.Value:
            return b.sub(_widened(b, a, linear(b, [t], [p.a.col], a_rows[r])), a_offset)

        def stage(t: ir.Value, offset: ir.Value) -> None:
            row = linear(b, [t], [p.b.row], b_base)
            with rolled_range(b, 0, columns, name="j") as j:
                value = b.sub(_widened(b, w, linear(b, [j], [p.b.col], row)), _zero_point(b, w_zero, b.add(j0, j)))
                store(b, value, tiles.panel, "int32", b.add(offset, j))

        tiles.run(lhs, stage)
        out_base = linear(b, [*batch, i0, j0], p.out.batch + (p.out.row, p.out.col))
        multiplier = None if per_column else output.multiplier(const_i64(0))
        for r in range(tile.rows):
            with b.if_then(b.icmp_signed("<", const_i64(r), rows)):
                with rolled_range(b, 0, columns, name="sj") as j:
                    scale = output.multiplier(b.add(j0, j)) if per_column else multiplier
                    index = linear(b, [const_i64(r), j], [p.out.row, p.out.col], out_base)
                    output.store(tiles.value(r, j), None, scale, index)


# ---- ConvInteger / QLinearConv ----

@dataclass(frozen=True)
class _ConvTiling:
    g: ConvGeometry
    rows: int  # output rows per item
    columns: int  # output columns per item

    @property
    def tile(self) -> Tile:
        return Tile(self.g.channel_block, self.rows * self.columns, self.g.in_group * math.prod(self.g.kernel))

    @property
    def item_dims(self) -> tuple[int, ...]:
        """(image, group, channel block, *outer output position, row block, column tile)."""
        g = self.g
        return (g.batch, g.group, g.out_group // g.channel_block, *g.out_size[:-2],
                math.ceil(g.out_size[-2] / self.rows), math.ceil(g.out_size[-1] / self.columns))


def _conv(graph: Graph, node: Node) -> _ConvTiling:
    x, w = (_operand(graph.input_types(node), node.op_type, "data", i) for i in range(2))
    g = conv_geometry(node, x, w)
    columns = min(CONV_COLUMNS, g.out_size[-1])
    blocks = math.ceil(g.out_size[-2] / max(1, CONV_POSITIONS // columns))
    return _ConvTiling(g, math.ceil(g.out_size[-2] / blocks), columns)


def _row_major(dims) -> tuple[int, ...]:
    return tuple(math.prod(dims[axis + 1:]) for axis in range(len(dims)))


def inside_steps(b: ir.IRBuilder, first: ir.Value, stride: int, size: int, count: int) -> tuple[ir.Value, ir.Value]:
    """The steps [low, high) of first + step * stride that fall inside [0, size), within [0, count)."""
    def steps_to(distance):  # ceil(max(distance, 0) / stride)
        distance = smax(b, distance, const_i64(0))
        return b.udiv(b.add(distance, const_i64(stride - 1)), const_i64(stride))

    low = smin(b, const_i64(count), steps_to(b.neg(first)))
    return low, smax(b, low, smin(b, const_i64(count), steps_to(b.sub(const_i64(size), first))))


def _emit_conv(ctx: KernelContext) -> None:
    b, tiling = ctx.builder, _conv(ctx.graph, ctx.node)
    g, tile = tiling.g, tiling.tile
    x, w = (_operand(ctx.inputs, ctx.node.op_type, "data", i) for i in range(2))
    x_zero, w_zero = (_operand(ctx.inputs, ctx.node.op_type, "zero_points", i) for i in range(2))
    output, tiles = _Output(ctx), _TileSum(b, tile)
    x_strides = _row_major((g.batch, g.channels, *g.in_size))
    y_strides = _row_major((g.batch, g.out_channels, *g.out_size))
    x_offset = _zero_point(b, x_zero, const_i64(0))
    zero = ir.Constant(I32, 0)
    with rolled_range(b, ctx.begin, ctx.end, name="item") as item:
        image, group, block, *position, row_block, column_tile = unravel(b, item, tiling.item_dims)
        first_channel = b.add(b.mul(group, const_i64(g.out_group)), b.mul(block, const_i64(tile.rows)))
        row0, column0 = b.mul(row_block, const_i64(tiling.rows)), b.mul(column_tile, const_i64(tiling.columns))
        channels = [b.add(first_channel, const_i64(r)) for r in range(tile.rows)]
        w_rows = [b.mul(channel, const_i64(tile.depth)) for channel in channels]
        w_offsets = [_zero_point(b, w_zero, channel) for channel in channels]

        def lhs(r: int, t: ir.Value) -> ir.Value:
            return b.sub(_widened(b, w, b.add(w_rows[r], t)), w_offsets[r])

        def stage(t: ir.Value, offset: ir.Value) -> None:
            """The im2col row of tap t = (input channel, kernel taps) over the item's output positions."""
            channel, *taps = unravel(b, t, (g.in_group, *g.kernel))
            outputs = [*position, row0, column0]  # the item's first output position
            starts = [b.add(b.sub(b.mul(start, const_i64(s)), const_i64(pad)), b.mul(tap, const_i64(d)))
                      for start, s, pad, d, tap in zip(outputs, g.strides, g.pads, g.dilations, taps)]
            *outer, row_start, column_start = starts
            valid = ir.Constant(ir.IntType(1), 1)
            for coord, size in zip(outer, g.in_size):
                valid = b.and_(valid, b.icmp_unsigned("<", coord, const_i64(size)))  # negatives wrap
            plane = linear(b, [image, b.add(b.mul(group, const_i64(g.in_group)), channel), *outer], x_strides[:-2])
            low, high = inside_steps(b, column_start, g.strides[-1], g.in_size[-1], tiling.columns)
            with rolled_range(b, 0, tiling.rows, name="im_row") as r:
                row = b.add(row_start, b.mul(r, const_i64(g.strides[-2])))
                inside = b.and_(valid, b.icmp_unsigned("<", row, const_i64(g.in_size[-2])))
                row_low = b.select(inside, low, const_i64(tiling.columns))
                row_high = b.select(inside, high, const_i64(tiling.columns))
                source = b.add(linear(b, [row], [g.in_size[-1]], plane), column_start)
                target = b.add(offset, b.mul(r, const_i64(tiling.columns)))
                for start, stop in ((const_i64(0), row_low), (row_high, const_i64(tiling.columns))):
                    with rolled_range(b, start, stop, name="pad") as c:
                        store(b, zero, tiles.panel, "int32", b.add(target, c))
                with rolled_range(b, row_low, row_high, name="im_column") as c:
                    value = _widened(b, x, linear(b, [c], [g.strides[-1]], source))
                    store(b, b.sub(value, x_offset), tiles.panel, "int32", b.add(target, c))

        tiles.run(lhs, stage)
        rows = smin(b, const_i64(tiling.rows), b.sub(const_i64(g.out_size[-2]), row0))
        columns = smin(b, const_i64(tiling.columns), b.sub(const_i64(g.out_size[-1]), column0))
        for r, channel in enumerate(channels):
            multiplier, bias = output.multiplier(channel), output.bias_of(channel)
            with rolled_range(b, 0, rows, name="out_row") as row:
                out = linear(b, [image, channel, *position, b.add(row0, row), column0], y_strides)
                first = b.mul(row, const_i64(tiling.columns))
                with rolled_range(b, 0, columns, name="out_column") as column:
                    output.store(tiles.value(r, b.add(first, column)), bias, multiplier, b.add(out, column))


# ---- checks ----

def _size(value_type) -> int:
    return math.prod(value_type.shape)


def _check(graph: Graph, node: Node) -> str | None:
    op, types = node.op_type, graph.input_types(node)
    data = [_operand(types, op, "data", i) for i in range(2)]
    if any(t.dtype not in EIGHT_BITS for t in data):
        return f"{op} on {data[0].dtype} x {data[1].dtype} is not compiled by the cpu target (int8/uint8 only)"
    is_conv = op in ("ConvInteger", "QLinearConv")
    if is_conv and not 3 <= len(data[0].shape) <= 5:
        return f"{op} with {len(data[0].shape) - 2} spatial dims is not compiled by the cpu target (1 to 3 only)"
    channels = data[1].shape[0] if is_conv else _matmul(graph, node)[0].n
    what = "output channels" if is_conv else "columns of B"
    zero_points = [_operand(types, op, "zero_points", i) for i in range(2)]
    scales = [_operand(types, op, "scales", i) for i in range(3)] if "QLinear" in op else [None] * 3
    for name, value_type, per_channel in (("input zero point", zero_points[0], False),
                                          ("weight zero point", zero_points[1], True),
                                          ("input scale", scales[0], False), ("weight scale", scales[1], True),
                                          ("output scale", scales[2], False),
                                          ("output zero point", _operand(types, op, "y_zero_point"), False)):
        if value_type is None:
            continue
        if _size(value_type) != 1 and not (per_channel and value_type.shape == (channels,)):
            allowed = f"one value or {channels} ({what})" if per_channel else "one value"
            return f"{op} {name} of shape {list(value_type.shape)} is not compiled by the cpu target ({allowed})"
    if "QLinear" in op and any(s.dtype not in SCALES for s in scales):
        return f"{op} with {scales[0].dtype} scales is not compiled by the cpu target (float16/float32 only)"
    out = node.outputs[0].dtype
    if "QLinear" in op and out not in EIGHT_BITS:
        return f"{op} to {out} is not compiled by the cpu target (int8/uint8 only)"
    return None


register_kernel(KernelSpec(("MatMulInteger", "QLinearMatMul"), _check, _matmul_items, _emit_matmul))
register_kernel(KernelSpec(("ConvInteger", "QLinearConv"), _check,
                           lambda graph, node: math.prod(_conv(graph, node).item_dims), _emit_conv))
