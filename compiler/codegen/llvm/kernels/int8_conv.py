"""kiln::QuantizedConv (2-D, NCHW): an int8 GEMM of packed weights by packed im2col tiles.

A work item owns (image, group, a tile of up to 64 flattened output positions, a chunk of output
channels). It first packs the tile's im2col columns into a stack panel, step by step: step s holds,
for every position of the tile, the 4 bytes of 4 consecutive input channels at one kernel tap
(the weights' packed order, compiler/ops/quantized_linear.py), int8 inputs shifted to uint8 and
taps outside the image reading the input zero point. The interior of each output row is copied
by a loop LLVM vectorizes. Then for each block of `rows` output channels and each `vectors`-vector
block of positions, int8_isa.emit_tile sums over all steps with the weight rows broadcast and the
panel as vectors; the requantized lanes are stored along the output row. Grouped convolutions run
it per group; depthwise ones (one input channel per group) have their own loop (int8_depthwise.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I8, I32, const_i64, load
from compiler.codegen.llvm.kernels import int8_depthwise
from compiler.codegen.llvm.kernels.gemm_microkernel import splat
from compiler.codegen.llvm.kernels.int8_isa import (ISAS, Int8Isa, Operands, Requantize, dynamic_rows, emit_tile,
                                                    panel_problem, store_lanes)
from compiler.codegen.llvm.kernels.integer_linear import inside_steps
from compiler.codegen.llvm.kernels.linear_algebra import rolled_range, smax, smin, stack_buffer, unravel, zero_fill
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.quantized_linear import SHIFT, round_up

TILE_POSITIONS = 64  # output positions per work item, at most
PARALLEL_ITEMS = 8  # work items wanted: channel chunks split small images
CHUNK_CHANNELS = 256  # output channels per chunk at least: enough sums to pay for packing the tile again


@dataclass(frozen=True)
class ConvPlan:
    isa: Int8Isa
    batch: int
    channels: int  # input channels per group
    height: int
    width: int
    group: int
    out_group: int  # output channels per group
    out_height: int
    out_width: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int]
    dilations: tuple[int, int]

    @property
    def quads(self) -> int:
        return round_up(self.channels, 4) // 4

    @property
    def steps(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.quads

    @property
    def positions(self) -> int:
        return self.out_height * self.out_width

    @property
    def tile(self) -> int:
        """Positions per item: whole vector blocks, no more than TILE_POSITIONS (rounded to a block)."""
        block = self.isa.columns
        return min(round_up(self.positions, block), round_up(TILE_POSITIONS, block))

    @property
    def tiles(self) -> int:
        return math.ceil(self.positions / self.tile)

    @property
    def chunk(self) -> int:
        """Output channels per item: a multiple of the tile's rows, split so that there are enough items,
        but into no fewer than CHUNK_CHANNELS each (every item packs its tile again)."""
        rows = self.isa.rows
        wanted = math.ceil(PARALLEL_ITEMS / (self.batch * self.group * self.tiles))
        chunks = max(1, min(math.ceil(self.out_group / CHUNK_CHANNELS), wanted))
        return round_up(math.ceil(self.out_group / chunks), rows)

    @property
    def item_dims(self) -> tuple[int, int, int, int]:
        return self.batch, self.group, self.tiles, math.ceil(self.out_group / self.chunk)


def conv_plan(graph: Graph, node: Node) -> ConvPlan:
    x, w = graph.input_types(node)[:2]
    y = node.outputs[0]
    attrs, group = node.attrs, node.attrs["group"]
    return ConvPlan(ISAS[attrs["isa"]], x.shape[0], x.shape[1] // group, x.shape[2], x.shape[3], group,
                    w.shape[0] // group, y.shape[2], y.shape[3], tuple(attrs["kernel_shape"]),
                    tuple(attrs["strides"]), tuple(attrs["pads"][:2]), tuple(attrs["dilations"]))


def _pack(ctx: KernelContext, plan: ConvPlan, panel: ir.Value, image: ir.Value, group: ir.Value,
          first: ir.Value) -> None:
    """panel[s, p, 0:4] = the 4 channel bytes of step s at tile position p (output position first + p)."""
    b, x = ctx.builder, ctx.inputs[0]
    shift = SHIFT[x.dtype]
    padding = ir.Constant(I32, (ctx.node.attrs["x_zero_point"] + shift) * 0x01010101 & 0xFFFFFFFF)
    plane = plan.height * plan.width
    first_row = b.udiv(first, const_i64(plan.out_width))
    last_row = smin(b, b.udiv(b.add(first, const_i64(plan.tile - 1)), const_i64(plan.out_width)),
                    const_i64(plan.out_height - 1))
    channel0 = b.mul(b.add(b.mul(image, const_i64(plan.group)), group), const_i64(plan.channels))
    with rolled_range(b, 0, plan.steps, name="pack_step") as step:
        kh, kw, quad = unravel(b, step, (*plan.kernel, plan.quads))
        planes = []
        for i in range(4):  # channels past the group's read its last one; their weights are 0
            channel = smin(b, b.add(b.mul(quad, const_i64(4)), const_i64(i)), const_i64(plan.channels - 1))
            planes.append(b.mul(b.add(channel0, channel), const_i64(plane)))
        target = b.mul(step, const_i64(plan.tile))
        with rolled_range(b, first_row, b.add(last_row, const_i64(1)), name="pack_row") as row:
            row_first = b.mul(row, const_i64(plan.out_width))
            low_column = smax(b, b.sub(first, row_first), const_i64(0))
            high_column = smin(b, const_i64(plan.out_width), b.sub(b.add(first, const_i64(plan.tile)), row_first))
            in_row = b.add(b.sub(b.mul(row, const_i64(plan.strides[0])), const_i64(plan.pads[0])),
                           b.mul(kh, const_i64(plan.dilations[0])))
            row_inside = b.icmp_unsigned("<", in_row, const_i64(plan.height))  # negatives wrap
            column0 = b.add(b.neg(const_i64(plan.pads[1])), b.mul(kw, const_i64(plan.dilations[1])))
            inside_low, inside_high = inside_steps(b, column0, plan.strides[1], plan.width, plan.out_width)
            inside_low = b.select(row_inside, inside_low, const_i64(plan.out_width))
            inside_high = b.select(row_inside, inside_high, const_i64(plan.out_width))
            start = smax(b, low_column, inside_low)
            stop = smax(b, start, smin(b, high_column, inside_high))
            base = b.sub(b.add(target, row_first), first)  # panel position of column 0 of this row

            def fill(lo, hi):
                with rolled_range(b, lo, hi, name="pad") as column:
                    _store_word(b, panel, b.add(base, column), padding)

            fill(low_column, smin(b, start, high_column))
            fill(smax(b, stop, low_column), high_column)
            source_row = b.mul(in_row, const_i64(plan.width))
            with rolled_range(b, start, stop, name="copy") as column:
                at = b.add(source_row, b.add(column0, b.mul(column, const_i64(plan.strides[1]))))
                word = ir.Constant(I32, 0)
                for i, channel_plane in enumerate(planes):
                    byte = load(b, x.ptr, x.dtype, b.add(channel_plane, at))
                    if shift:
                        byte = b.xor(byte, ir.Constant(I8, 0x80))
                    word = b.or_(word, b.shl(b.zext(byte, I32), ir.Constant(I32, 8 * i)))
                _store_word(b, panel, b.add(base, column), word)


def _store_word(b: ir.IRBuilder, panel: ir.Value, position: ir.Value, word: ir.Value) -> None:
    b.store(word, b.gep(panel, [position], source_etype=I32, inbounds=True), align=4)


def _emit(ctx: KernelContext) -> None:
    b, plan = ctx.builder, conv_plan(ctx.graph, ctx.node)
    if int8_depthwise.is_depthwise(plan):
        int8_depthwise.emit(ctx, plan)
        return
    isa, node = plan.isa, ctx.node
    _, weights, offsets, multipliers = ctx.inputs
    operands, requantize = Operands(isa, vectors_unsigned=True), Requantize(node.attrs, isa.lanes)
    panel = stack_buffer(b, "int32", plan.steps * plan.tile)
    zero_fill(b, panel, "int32", plan.steps * plan.tile)  # positions past the image stay defined
    row_bytes = plan.steps * 4
    with rolled_range(b, ctx.begin, ctx.end, name="item") as item:
        image, group, tile, chunk = unravel(b, item, plan.item_dims)
        first = b.mul(tile, const_i64(plan.tile))
        _pack(ctx, plan, panel, image, group, first)
        chunk_first = b.mul(chunk, const_i64(plan.chunk))
        chunk_end = smin(b, b.add(chunk_first, const_i64(plan.chunk)), const_i64(plan.out_group))
        channel_base = b.mul(group, const_i64(plan.out_group))
        with rolled_range(b, chunk_first, chunk_end, step=isa.rows, name="channel_block") as block:
            rows = dynamic_rows(b, block, isa.rows, plan.out_group - 1, lambda r: b.gep(
                weights.ptr, [b.mul(b.add(channel_base, r), const_i64(row_bytes))], source_etype=I8, inbounds=True))
            with rolled_range(b, 0, plan.tile, step=isa.columns, name="position_block") as position:
                vectors = b.gep(panel, [position], source_etype=I32, inbounds=True)
                sums = emit_tile(b, operands, plan.steps, rows, 4, vectors, plan.tile * 4)
                _store(ctx, plan, requantize, sums, block, chunk_end, channel_base, image,
                       b.add(first, position), offsets, multipliers)


def _store(ctx, plan, requantize, sums, block, chunk_end, channel_base, image, position, offsets, multipliers):
    """Requantize the tile and store it along the output rows; a tile reaching past the image stores its
    first lanes only (masked), the others store whole vectors."""
    b, lanes = ctx.builder, plan.isa.lanes
    rows = []
    for r, row_sums in enumerate(sums):
        channel = b.add(channel_base, smin(b, b.add(block, const_i64(r)), const_i64(plan.out_group - 1)))
        offset = _splat_load(b, offsets, "int32", channel, lanes)
        multiplier = _splat_load(b, multipliers, "float32", channel, lanes)
        start = b.add(b.mul(b.add(b.mul(image, const_i64(plan.out_group * plan.group)), channel),
                            const_i64(plan.positions)), position)
        rows.append((start, [requantize(b, vector, offset, multiplier) for vector in row_sums]))
    left = b.sub(const_i64(plan.positions), position)
    with b.if_else(b.icmp_signed(">=", left, const_i64(plan.isa.columns))) as (whole, edge):
        for branch, masked in ((whole, False), (edge, True)):
            with branch:
                for r, (start, values) in enumerate(rows):
                    with b.if_then(b.icmp_signed("<", b.add(block, const_i64(r)), chunk_end)):
                        for j, value in enumerate(values):
                            count = b.sub(left, const_i64(j * lanes)) if masked else None
                            store_lanes(b, value, ctx.outputs[0].ptr, b.add(start, const_i64(j * lanes)), count)


def _splat_load(b: ir.IRBuilder, arg, dtype: str, index: ir.Value, lanes: int) -> ir.Value:
    return splat(b, load(b, arg.ptr, dtype, index), lanes)


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    if len(x.shape) != 4:
        return f"{node.qualified_op} on a {len(x.shape)}-D input is not compiled by the cpu target (2-D convs only)"
    plan = conv_plan(graph, node)
    if int8_depthwise.is_depthwise(plan):
        return None
    return panel_problem(node, plan.steps * plan.tile * 4, "im2col tile (input channels x kernel taps)")


def _work_items(graph: Graph, node: Node) -> int:
    plan = conv_plan(graph, node)
    if int8_depthwise.is_depthwise(plan):
        return int8_depthwise.work_items(plan)
    return math.prod(plan.item_dims)


register_kernel(KernelSpec((f"{KILN_DOMAIN}::QuantizedConv",), _check, _work_items, _emit))
