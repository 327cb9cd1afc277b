"""Conv with 1 to 3 spatial dims: direct convolution on register tiles; 1x1 convolutions that read no
padding run as a GEMM (strided ones read their columns at tabled offsets); depthwise convolutions
that depthwise_conv.py specialises run its kernel.

A work item is (image, group, block of output channels, outer output position (depth), block
of output rows, tile of output columns); it owns whole output elements, so results are the
same for any thread count. For each chunk of input channels it first stages the input rows the
block reads into a stack buffer: zero-padded and split by stride phase, at a fixed row pitch.
Output (row, column) and kernel tap (kh, kw) then read stage[phase(kh, kw)][row + shift(kh)]
[column + shift(kw)], so over the flattened (row, column) index q = row * pitch + column every
tap reads contiguous memory (the pitch's few extra columns are computed and dropped). The
chunk's weights are packed per group of tile rows (linear_algebra.pack_rows), and register
tiles (gemm_microkernel.py) of output channels x flattened positions sum over the chunk's
(input channel, outer tap) planes, a few planes and all their kh x kw taps per step, loading
each tap's positions as vectors straight from the stage. A 1-D conv is a 2-D one of height 1.
A last pass adds the bias and applies the caller's epilogue before the store. Blocking comes
from a small cycle model (DirectPlan.cycles).

Small outputs with many channels (7 x 7 in a ResNet) leave position vectors part empty, and larger
ones reload their position vectors unaligned for every tap: a fused conv whose weights fuse-epilogues
transposed at compile time instead runs tiles of positions x channels (on larger images, over a few
rows per item), broadcasting staged inputs (a stride-1 1x1 conv's input in place) and loading weight
vectors (channel_vector_form); its store pass reads the accumulators through squares transposed
in registers. When all input channels fit one chunk, the tiles start from zero instead of a
zeroed accumulator buffer.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import cache
from typing import Callable

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, element_type, load, store
from compiler.codegen.llvm.kernels import depthwise_conv
from compiler.codegen.llvm.kernels.conv_geometry import COLUMN_TILE, ConvGeometry, conv_geometry, row_major
from compiler.codegen.llvm.kernels.gemm_microkernel import (MicroTile, Operand, choose_tile, emit_register_tile,
                                                            load_vector, round_up, split_cycles, store_vector,
                                                            transpose_square, vector_lanes)
from compiler.codegen.llvm.kernels.linear_algebra import (FLOATS, Epilogue, emit_gemm, gemm_plan, linear, pack_rows,
                                                          rolled_range, smax, smin, stack_buffer, unravel, zero_fill)
from compiler.codegen.llvm.kernels.registry import BatchItems, KernelContext, KernelSpec, batch_major, register_kernel
from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType

BLOCK_POSITIONS = 512  # flattened output positions (rows x pitch) per work item, at most
CHANNEL_BLOCK = 96  # output channels per work item at most
CHANNEL_VECTOR_POSITIONS = 1024  # output positions per image up to which a channel-vector item takes all rows
# (measured: 1x1 and 3x3 convs still gain at 28 x 28 once the cycle model picks the form)
CHANNEL_VECTOR_ROWS = 4  # output rows per channel-vector item on larger images (measured on 3x3 convs at 56 x 56
# and 112 x 112, 1 thread: 4 rows 0.85x the direct form, where 2, 3, 6, 9 or 16 rows gained less or lost)
CHANNEL_VECTOR_TERMS = 64  # input channels x taps at least for the channel-vector form on larger images (a
# C=3 3x3 stem, 27 terms, ran 1.2x slower in it; the C=3 7x7 stem, 147, 0.9x)
PARALLEL_ITEMS = 8  # work items wanted (channel-vector form)
SPLIT_POSITIONS = 64  # output positions per item at least when a pointwise conv splits its rows
STAGE_CYCLES, STRIDED_STAGE_CYCLES = 0.5, 1.5  # per staged element (a copy; a strided one gathers)
PACK_CYCLES, STORE_CYCLES = 0.5, 0.3  # per packed weight; per output (zero fill and the store pass)
STEP_TAPS = 16  # kernel taps per register-tile step at least: whole planes of taps, as many as that takes
MAX_TILE_TAPS = 17  # taps unrolled in one register tile at most (more and LLVM hoists their loads, then spills)
STAGED_ELEMENTS = 4096  # staging budget (L1): a chunk of input channels is staged before any
# of it is read, so reads never wait on a pending copy store


@dataclass(frozen=True)
class DirectPlan:
    """How the direct form splits a conv: the register tile, output channels and output rows per item,
    (input channel, outer tap) planes per tile step, input channels per staged chunk, flattened positions
    per item."""

    g: ConvGeometry
    tile: MicroTile
    block: int
    rows: int
    planes_per_step: int
    chunk: int
    positions: int
    channel_vectors: bool = False  # tiles of positions x channels (channel_vector_plan)

    @property
    def taps(self) -> int:
        return math.prod(self.g.kernel[-2:])

    @property
    def reads_input(self) -> bool:
        """The channel-vector form of a stride-1 pointwise conv reads its input planes in place: staged,
        they would be the same rows at the same pitch (chunks still bound what a step's tiles read)."""
        return self.channel_vectors and self.g.pointwise and all(s == 1 for s in self.g.strides)

    @property
    def single_chunk(self) -> bool:
        """All input channels in one chunk: the tiles' first pass writes its sums, acc needs no zeros first."""
        return self.chunk >= self.g.in_group

    @property
    def outer_taps(self) -> int:
        return math.prod(self.g.kernel[:-2])

    @property
    def staged_rows(self) -> int:
        return self.rows + self.g.shift(-2, self.g.kernel[-2] - 1)[1]

    @property
    def slot(self) -> int:
        """Staged elements per (input channel, outer kernel tap); a conv read in place: its input plane."""
        if self.reads_input:
            return math.prod(self.g.in_size)
        return self.g.phase_count * self.staged_rows * self.g.pitch

    @property
    def steps(self) -> int:
        """Tile steps of a full chunk (its planes rounded up to whole steps; the rest are zeros)."""
        return math.ceil(self.chunk * self.outer_taps / self.planes_per_step)

    @property
    def item_dims(self) -> tuple[int, ...]:
        g = self.g
        return (g.batch, g.group, math.ceil(g.out_group / self.block), *g.out_size[:-2],
                math.ceil(g.out_size[-2] / self.rows), math.ceil(g.out_size[-1] / g.columns))

    def cycles(self) -> float:
        """Modelled cycles (gemm_microkernel.split_cycles) of the items: register tiles, staging, weight
        packing and the store pass of each, the last channel block and row block being partial."""
        g, tile = self.g, self.tile
        planes = g.in_group * self.outer_taps
        stage = 0 if self.reads_input else \
            planes * self.slot * (STAGE_CYCLES if g.phase_count == 1 else STRIDED_STAGE_CYCLES)

        def item(channels: int, rows: int) -> float:
            if self.channel_vectors:  # the weights need no packing; tiles span the block's padding too
                tiles = math.ceil(self.positions / tile.rows) * self.block // tile.columns
                stores = channels * self.positions * STORE_CYCLES
                return tiles * planes * self.taps * tile.step_cycles() + stage + stores
            positions = round_up((rows - 1) * g.pitch + g.columns, tile.columns)
            tiles = math.ceil(channels / tile.rows) * positions // tile.columns
            return (tiles * planes * self.taps * tile.step_cycles() + stage
                    + channels * planes * self.taps * PACK_CYCLES + channels * positions * STORE_CYCLES)

        batch, group, blocks, *outer, row_blocks, columns = self.item_dims
        height, per_block = g.out_size[-2], math.prod(outer) * columns
        costs = [cost for block in range(blocks) for cost in
                 [item(min(self.block, g.out_group - block * self.block), min(self.rows, height - row * self.rows))
                  for row in range(row_blocks)] * per_block] * batch * group
        return split_cycles(costs)


def _direct_plan(g: ConvGeometry, tile: MicroTile, block: int, rows: int) -> DirectPlan:
    per_step = max(1, STEP_TAPS // math.prod(g.kernel[-2:]))
    outer = math.prod(g.kernel[:-2])
    slot = g.phase_count * (rows + g.shift(-2, g.kernel[-2] - 1)[1]) * g.pitch
    # At least two steps per chunk even past the budget: a loop of one step is folded away, and LLVM
    # then schedules the tile passes of big kernels as one block and spills (the 7x7 stem ran at half speed).
    chunk = min(g.in_group, max(2 * per_step, STAGED_ELEMENTS // (outer * slot)))
    if g.in_group * outer * slot <= 2 * STAGED_ELEMENTS:  # one chunk a little past the budget: no acc zeroing
        chunk = g.in_group
    if chunk < g.in_group:  # whole steps per chunk, so only the last chunk has zero planes
        chunk = chunk // per_step * per_step
    return DirectPlan(g, tile, block, rows, per_step, chunk, round_up((rows - 1) * g.pitch + g.columns, tile.columns))


@cache
def direct_plan(g: ConvGeometry) -> DirectPlan:
    """The register tile for the output channels and a block of rows, then the (channel block, rows)
    of the fewest modelled cycles."""
    height = g.out_size[-2]
    tile = choose_tile(g.dtype, g.out_group, min(height, max(1, BLOCK_POSITIONS // g.pitch)) * g.pitch)
    row_options = sorted({math.ceil(height / blocks) for blocks in range(1, height + 1)})
    row_options = [rows for rows in row_options if rows * g.pitch <= BLOCK_POSITIONS] or row_options[:1]
    block_options = range(tile.rows, min(round_up(g.out_group, tile.rows), CHANNEL_BLOCK) + 1, tile.rows)
    plans = [_direct_plan(g, tile, block, rows) for block in block_options for rows in row_options]
    return min(plans, key=DirectPlan.cycles)


def channel_vector_form(g: ConvGeometry) -> bool:
    """Whether register tiles should run their vectors along the output channels instead of the positions
    (the weights, transposed at compile time by fuse-epilogues, then load as vectors unpacked): for few
    positions and many channels, when the cycle model says so. A 7 x 7 output fills 49 of 64 position
    lanes but every channel lane. Larger images take it in blocks of rows (channel_vector_plan) where the
    reduction is long enough: a pointwise conv there stays a GEMM (the form measured no faster)."""
    lanes = vector_lanes(g.dtype)
    if not (g.group == 1 and len(g.kernel) == 2 and g.out_size[-1] <= COLUMN_TILE
            and g.out_channels >= 4 * lanes):
        return False
    if math.prod(g.out_size) > CHANNEL_VECTOR_POSITIONS and \
            (g.pointwise or g.in_group * math.prod(g.kernel) < CHANNEL_VECTOR_TERMS):
        return False
    positions = gemm_plan(g.gemm(bias=False)).cycles if g.pointwise else direct_plan(g).cycles()
    return channel_vector_plan(g).cycles() < positions


@cache
def channel_vector_plan(g: ConvGeometry) -> DirectPlan:
    """The channel-vector form: a tile of positions x channels (its columns dividing the channels rounded up
    to whole vectors, which the transposed weights pad with zeros, so no weight is read past them), all
    output rows per item (CHANNEL_VECTOR_ROWS on larger images: their input rows are staged per item, as in
    the direct form), and the channel block of the fewest modelled cycles: more blocks stage the input
    more often. Steps take several input channels only when they divide the channels. A stride-1 pointwise
    conv (read in place, nothing staged per item) takes the blocks that leave PARALLEL_ITEMS items, and
    with too few channel blocks for that splits its rows between items too, keeping
    SPLIT_POSITIONS positions an item at least: a 1x1 conv to 160 channels on 14 x 14 has 5 blocks,
    which 2 threads would share 3 : 2."""
    channels = round_up(g.out_channels, vector_lanes(g.dtype))
    rows = g.out_size[-2] if math.prod(g.out_size) <= CHANNEL_VECTOR_POSITIONS else \
        min(g.out_size[-2], CHANNEL_VECTOR_ROWS)
    in_place = g.pointwise and all(s == 1 for s in g.strides)  # its tiles keep the unaligned costs (wide
    # aligned ones measured slower on DenseNet's 1x1 convs at 14 x 14)
    tile = choose_tile(g.dtype, rows * g.out_size[-1], channels, columns_divide=True, aligned=not in_place)
    taps = math.prod(g.kernel)
    per_step = max(1, STEP_TAPS // taps)
    per_step = per_step if g.in_group % per_step == 0 else 1
    slot = g.phase_count * (rows + g.shift(-2, g.kernel[-2] - 1)[1]) * g.pitch
    chunk = min(g.in_group, max(2 * per_step, STAGED_ELEMENTS // slot) // per_step * per_step)
    if g.in_group * slot <= 2 * STAGED_ELEMENTS:  # as in _direct_plan
        chunk = g.in_group
    blocks = [block for block in range(tile.columns, channels + 1, tile.columns) if channels % block == 0]
    if not in_place:  # each item stages its input: the block of the fewest modelled cycles
        plans = [DirectPlan(g, tile, block, rows, per_step, chunk, round_up(rows * g.out_size[-1], tile.rows), True)
                 for block in blocks]
        return min(plans, key=DirectPlan.cycles)
    row_blocks = math.ceil(g.out_size[-2] / rows)
    block = max([block for block in blocks if g.batch * channels // block * row_blocks >= PARALLEL_ITEMS]
                or blocks[:1])
    items = g.batch * channels // block * row_blocks
    if items < PARALLEL_ITEMS:
        row_blocks = min(math.ceil(PARALLEL_ITEMS / items), max(1, math.prod(g.out_size) // SPLIT_POSITIONS))
        rows = math.ceil(rows / row_blocks)
    positions = rows * g.out_size[-1]
    return DirectPlan(g, tile, block, rows, per_step, chunk, round_up(positions, tile.rows), True)


class _DirectConv:
    """Emits the direct form; see the module docstring."""

    packs_weights = True

    def __init__(self, ctx: KernelContext, geometry: ConvGeometry, plan: DirectPlan, epilogue: Epilogue | None):
        self.b, self.g, self.plan = ctx.builder, geometry, plan
        self.x, self.w, self.y = ctx.inputs[0].ptr, ctx.inputs[1].ptr, ctx.outputs[0].ptr
        self.bias = ctx.inputs[2].ptr if len(ctx.inputs) > 2 and ctx.inputs[2] is not None else None
        self.epilogue = epilogue
        g = geometry
        self.x_strides = row_major((g.batch, g.channels, *g.in_size))
        self.y_strides = row_major((g.batch, g.out_channels, *g.out_size))
        self.w_strides = row_major((g.out_channels, g.in_group, *g.kernel))
        self.blocks = {phases: index for index, phases in enumerate(
            (row, column) for row in g.phases(-2) for column in g.phases(-1))}
        self.step_width = plan.planes_per_step * plan.taps  # weights per tile row and step
        self.acc = stack_buffer(self.b, g.dtype, plan.block * plan.positions)
        reach = max(self._tap_offset(kh, kw) for kh in range(g.kernel[-2]) for kw in range(g.kernel[-1]))
        self.stage_size = plan.steps * plan.planes_per_step * plan.slot + max(0, reach + plan.positions - plan.slot)
        self.stage = None if plan.reads_input else stack_buffer(self.b, g.dtype, self.stage_size)
        if self.packs_weights:
            self.weights = stack_buffer(self.b, g.dtype, plan.block * plan.steps * round_up(self.step_width,
                                                                                           plan.tile.lanes))

    def run(self, begin: ir.Value, end: ir.Value) -> None:
        b, g, plan = self.b, self.g, self.plan
        with rolled_range(b, begin, end, name="item") as item:
            image, group, block, *position, row_block, column_tile = unravel(b, item, plan.item_dims)
            first_channel = b.add(b.mul(group, const_i64(g.out_group)), b.mul(block, const_i64(plan.block)))
            channels = smin(b, const_i64(plan.block),
                            b.sub(const_i64(g.out_group), b.mul(block, const_i64(plan.block))))
            row0, column0 = b.mul(row_block, const_i64(plan.rows)), b.mul(column_tile, const_i64(g.columns))
            rows = smin(b, const_i64(plan.rows), b.sub(const_i64(g.out_size[-2]), row0))
            columns = smin(b, const_i64(g.columns), b.sub(const_i64(g.out_size[-1]), column0))
            if not plan.single_chunk:
                zero_fill(b, self.acc, g.dtype, plan.block * plan.positions)
            first_input = b.mul(group, const_i64(g.in_group))
            with rolled_range(b, 0, g.in_group, plan.chunk, name="c0") as c0:
                chunk = smin(b, const_i64(plan.chunk), b.sub(const_i64(g.in_group), c0))
                if plan.reads_input:
                    stage = b.gep(self.x, [linear(b, [image, b.add(first_input, c0)], self.x_strides[:2])],
                                  source_etype=element_type(g.dtype))
                else:
                    stage = self.stage
                    zero_fill(b, stage, g.dtype, self.stage_size)
                    self._for_each_plane(image, b.add(first_input, c0), chunk, position,
                                         lambda plane, slot: self._stage(plane, slot, row0, column0))
                planes = b.mul(chunk, const_i64(plan.outer_taps))
                steps = b.udiv(b.add(planes, const_i64(plan.planes_per_step - 1)), const_i64(plan.planes_per_step))
                self._multiply(stage, c0, planes, steps, first_channel, channels, row0, rows)
            self._store(image, first_channel, channels, position, row0, column0, rows, columns)

    def _multiply(self, stage, c0, planes, steps, first_channel, channels, row0, rows) -> None:
        """acc += the chunk's weights (packed here) times the staged chunk (at `stage`); the staged rows
        are the item's own (its first output row is staged row 0)."""
        b, g, plan = self.b, self.g, self.plan
        weights = linear(b, [first_channel, c0], self.w_strides[:2])
        pack_rows(b, plan.tile, g.dtype, self.w, weights, (self.w_strides[0], 1), channels, steps, self.step_width,
                  b.mul(planes, const_i64(plan.taps)), self.weights,
                  plan.steps * plan.tile.rows * round_up(self.step_width, plan.tile.lanes))
        self._accumulate(stage, steps, channels)

    def _for_each_plane(self, image, first_input, chunk, position, visit) -> None:
        """visit(input plane index, staging slot) for every input plane of the channel chunk that an
        outer kernel tap reaches; planes in the padding are skipped (their slots stay zero)."""
        b, g = self.b, self.g
        with ExitStack() as loops:
            c = loops.enter_context(rolled_range(b, 0, chunk, name="c"))
            taps, coords, valid = [], [], ir.Constant(ir.IntType(1), 1)
            for axis, out_coord in enumerate(position):
                tap = loops.enter_context(rolled_range(b, 0, g.kernel[axis], name=f"k{axis}"))
                start = b.sub(b.mul(out_coord, const_i64(g.strides[axis])), const_i64(g.pads[axis]))
                coord = b.add(start, b.mul(tap, const_i64(g.dilations[axis])))
                valid = b.and_(valid, b.icmp_unsigned("<", coord, const_i64(g.in_size[axis])))  # negatives wrap
                taps.append(tap)
                coords.append(coord)
            loops.enter_context(b.if_then(valid))
            plane = linear(b, [image, b.add(first_input, c), *coords], self.x_strides[:-2])
            slot = b.mul(linear(b, [c, *taps], (self.plan.outer_taps, *row_major(g.kernel[:-2]))),
                         const_i64(self.plan.slot))
            visit(plane, slot)

    def _stage(self, plane: ir.Value, slot: ir.Value, row0: ir.Value, column0: ir.Value) -> None:
        """Copy the input rows the block reads into `slot`, one block per stride phase (padding stays zero)."""
        b, g = self.b, self.g
        row_start = b.sub(b.mul(row0, const_i64(g.strides[-2])), const_i64(g.pads[-2]))
        column_start = b.sub(b.mul(column0, const_i64(g.strides[-1])), const_i64(g.pads[-1]))
        for (row_phase, column_phase), phase_block in self.blocks.items():
            first_row = b.add(row_start, const_i64(row_phase))  # input row of staged row 0
            first_column = b.add(column_start, const_i64(column_phase))
            block = b.add(slot, const_i64(phase_block * self.plan.staged_rows * g.pitch))
            with rolled_range(b, *self._inside(first_row, -2, self.plan.staged_rows), name="stage_row") as i:
                source = linear(b, [b.add(first_row, linear(b, [i], [g.strides[-2]]))], [g.in_size[-1]], plane)
                target = linear(b, [i], [g.pitch], block)
                with rolled_range(b, *self._inside(first_column, -1, g.pitch), name="stage_column") as t:
                    value = load(b, self.x, g.dtype, linear(b, [t], [g.strides[-1]], b.add(source, first_column)))
                    store(b, value, self.stage, g.dtype, b.add(target, t))

    def _tap_offset(self, kh: int, kw: int) -> int:
        """Where kernel tap (kh, kw) of output position 0 sits in a staging slot."""
        (row_phase, row_shift), (column_phase, column_shift) = self.g.shift(-2, kh), self.g.shift(-1, kw)
        return (self.blocks[row_phase, column_phase] * self.plan.staged_rows + row_shift) * self.g.pitch + column_shift

    def _inside(self, first: ir.Value, axis: int, count: int) -> tuple[ir.Value, ir.Value]:
        """The steps [low, high) of first + step * stride that fall inside the input along `axis`."""
        b, stride = self.b, self.g.strides[axis]

        def steps_to(distance):  # ceil(max(distance, 0) / stride)
            distance = smax(b, distance, const_i64(0))
            return distance if stride == 1 else b.udiv(b.add(distance, const_i64(stride - 1)), const_i64(stride))

        high = smin(b, const_i64(count), steps_to(b.sub(const_i64(self.g.in_size[axis]), first)))
        return steps_to(b.neg(first)), high

    def _accumulate(self, staged: ir.Value, steps: ir.Value, channels: ir.Value) -> None:
        """acc[r, q] += sum over the chunk's planes and their taps of w[r, plane, tap] * staged(plane, q + tap),
        one register tile per (position strip, channel group)."""
        b, g, plan = self.b, self.g, self.plan
        tile, dtype = plan.tile, element_type(g.dtype)
        width = round_up(self.step_width, tile.lanes)
        taps = [(plane * plan.slot + self._tap_offset(kh, kw)) for plane in range(plan.planes_per_step)
                for kh in range(g.kernel[-2]) for kw in range(g.kernel[-1])]
        with rolled_range(b, 0, plan.positions, tile.columns, name="q0") as q0:
            stage = b.gep(staged, [q0], source_etype=dtype)
            with rolled_range(b, 0, channels, tile.rows, name="r0") as r0:
                group = b.gep(self.weights, [b.mul(r0, const_i64(plan.steps * width))], source_etype=dtype)
                rows = [b.gep(group, [const_i64(r * width)], source_etype=dtype) for r in range(tile.rows)]
                passes = math.ceil(len(taps) / MAX_TILE_TAPS)  # big kernels: a few passes of fewer taps
                for first in range(passes):
                    used = range(first * len(taps) // passes, (first + 1) * len(taps) // passes)
                    emit_register_tile(b, tile, g.dtype, steps, rows, Operand(tile.rows * width, tuple(used)), stage,
                                       Operand(plan.planes_per_step * plan.slot, tuple(taps[u] for u in used)),
                                       self.acc, b.add(b.mul(r0, const_i64(plan.positions)), q0), plan.positions,
                                       fresh=plan.single_chunk and first == 0)

    def _store(self, image, first_channel, channels, position, row0, column0, rows, columns) -> None:
        """y = epilogue(acc + bias) over the block, dropping the pitch's extra columns."""
        b, g, plan = self.b, self.g, self.plan
        with rolled_range(b, 0, channels, name="out_channel") as r:
            channel = b.add(first_channel, r)
            bias = None if self.bias is None else load(b, self.bias, g.dtype, channel)
            with rolled_range(b, 0, rows, name="out_row") as row:
                out = linear(b, [image, channel, *position, b.add(row0, row)], self.y_strides[:-1])
                acc_row = linear(b, [r, row], [plan.positions, g.pitch])
                with rolled_range(b, 0, columns, name="out_column") as column:
                    value = load(b, self.acc, g.dtype, b.add(acc_row, column))
                    value = value if bias is None else b.fadd(value, bias)
                    column = b.add(column0, column)
                    if self.epilogue is not None:
                        value = self.epilogue(b, value, out, column)
                    store(b, value, self.y, g.dtype, b.add(out, column))


class _ChannelVectorConv(_DirectConv):
    """The channel-vector form (channel_vector_plan): tiles of output positions x output channels; a
    tile row broadcasts one position's staged input for each tap, the columns load weight vectors
    from the weights transposed in blocks of the item's channels, [M / block, C * taps, block], so an
    item reads its weights in order; the store pass writes the tile back transposed."""

    packs_weights = False

    def __init__(self, ctx: KernelContext, geometry: ConvGeometry, plan: DirectPlan, epilogue: Epilogue | None):
        super().__init__(ctx, geometry, plan, epilogue)
        self.square = stack_buffer(self.b, geometry.dtype, vector_lanes(geometry.dtype) ** 2)

    def _multiply(self, stage, c0, planes, steps, first_channel, channels, row0, rows) -> None:
        """The item's output rows [row0, row0 + rows) of a conv read in place (all rows otherwise: row0 0)."""
        b, g, plan = self.b, self.g, self.plan
        tile, dtype, width = plan.tile, element_type(g.dtype), g.out_size[-1]
        first = b.mul(row0, const_i64(width)) if plan.reads_input else const_i64(0)  # a stage starts at row0
        count = b.mul(rows, const_i64(width))
        per_step, taps = plan.planes_per_step, plan.taps
        offsets = [self._tap_offset(kh, kw) for kh in range(g.kernel[-2]) for kw in range(g.kernel[-1])]
        a_operand = Operand(per_step * plan.slot,
                            tuple(p * plan.slot + offset for p in range(per_step) for offset in offsets))
        b_operand = Operand(per_step * taps * plan.block,
                            tuple((p * taps + tap) * plan.block for p in range(per_step) for tap in range(taps)))
        weights = b.gep(self.w, [linear(b, [first_channel, c0], [g.in_group * taps, taps * plan.block])],
                        source_etype=dtype)  # first_channel = block * plan.block
        with rolled_range(b, 0, plan.block, tile.columns, name="m0") as m0:
            with rolled_range(b, 0, plan.positions, tile.rows, name="n0") as n0:
                rows = []
                for r in range(tile.rows):  # a position's staged input; positions past the last repeat it
                    position = b.add(first, smin(b, b.add(n0, const_i64(r)), b.sub(count, const_i64(1))))
                    row, column = b.udiv(position, const_i64(width)), b.urem(position, const_i64(width))
                    rows.append(b.gep(stage, [linear(b, [row, column], [g.pitch, 1])], source_etype=dtype))
                emit_register_tile(b, tile, g.dtype, steps, rows, a_operand, b.gep(weights, [m0], source_etype=dtype),
                                   b_operand, self.acc, b.add(b.mul(n0, const_i64(plan.block)), m0), plan.block,
                                   fresh=plan.single_chunk)

    def _store(self, image, first_channel, channels, position, row0, column0, rows, columns) -> None:
        """y[channel, q] = epilogue(acc[q, channel] + bias) (the epilogue's columns span the positions), a
        square of lanes x lanes at a time: transposed in registers into a scratch square, then stored along
        the positions (positions past the last repeat it and are dropped)."""
        b, g, plan = self.b, self.g, self.plan
        lanes, width = vector_lanes(g.dtype), g.out_size[-1]
        first, count = b.mul(row0, const_i64(width)), b.mul(rows, const_i64(width))  # the item's positions
        with rolled_range(b, 0, channels, lanes, name="out_channels") as m0:
            with rolled_range(b, 0, count, lanes, name="out_positions") as q0:
                square = [load_vector(b, self.acc, g.dtype, linear(b, [smin(b, b.add(q0, const_i64(i)),
                                                                            b.sub(count, const_i64(1))), m0],
                                                                   [plan.block, 1]), lanes) for i in range(lanes)]
                for j, column in enumerate(transpose_square(b, square)):
                    store_vector(b, column, self.square, g.dtype, const_i64(j * lanes), aligned=True)
                with rolled_range(b, 0, smin(b, const_i64(lanes), b.sub(channels, m0)), name="out_channel") as j:
                    channel = b.add(first_channel, b.add(m0, j))
                    bias = None if self.bias is None else load(b, self.bias, g.dtype, channel)
                    out = linear(b, [image, channel], self.y_strides[:2])
                    with rolled_range(b, 0, smin(b, const_i64(lanes), b.sub(count, q0)),
                                      name="out_position") as i:
                        value = load(b, self.square, g.dtype, linear(b, [j, i], [lanes, 1]))
                        value = value if bias is None else b.fadd(value, bias)
                        q = b.add(first, b.add(q0, i))
                        if self.epilogue is not None:
                            value = self.epilogue(b, value, out, q)
                        store(b, value, self.y, g.dtype, b.add(out, q))


def conv_check(graph: Graph, node: Node) -> str | None:
    """Why a Conv-like node (inputs X, W, optional B, maybe fused operands) is not compiled; None when it is."""
    types = [t for t in graph.input_types(node) if t is not None]
    dtypes = {t.dtype for t in types}
    if not dtypes <= set(FLOATS):
        return (f"{node.qualified_op} on {', '.join(sorted(dtypes))} is not compiled by the cpu target "
                "(float32/float64 only)")
    if not 3 <= len(types[0].shape) <= 5:
        return (f"{node.qualified_op} with {len(types[0].shape) - 2} spatial dims is not compiled by the cpu target "
                "(1 to 3 only)")
    return None


def direct_form_plan(node: Node, geometry: ConvGeometry, w_type: TensorType) -> DirectPlan:
    if not node.attrs.get("transposed_weights", 0):
        return direct_plan(geometry)
    return replace(channel_vector_plan(geometry), block=w_type.shape[2])  # the block the weights were laid out for


def conv_work_items(graph: Graph, node: Node) -> int:
    """Work items of a Conv-like node (inputs X, W, optional B)."""
    x_type, w_type = graph.input_types(node)[:2]
    geometry = conv_geometry(node, x_type, w_type)
    if depthwise_conv.specialised(geometry):
        return depthwise_conv.work_items(geometry)
    if geometry.pointwise and not node.attrs.get("transposed_weights", 0):
        return geometry.gemm(bias=False).work_items
    return math.prod(direct_form_plan(node, geometry, w_type).item_dims)


def conv_batch_items(graph: Graph, node: Node, bound: int) -> BatchItems | None:
    """KernelSpec.batch_items of a Conv-like node: every form's items start with the image."""
    return batch_major(conv_work_items(graph, node), bound)


def emit_conv(ctx: KernelContext, epilogue_for: Callable[[int], Epilogue] | None = None) -> None:
    """A Conv-like node's kernel (inputs X, W, optional B). `epilogue_for(columns)` gives the epilogue
    mapping each output before its store (linear_algebra.Epilogue), for columns spanning that many
    trailing output dims."""
    node = ctx.node
    x_type, w_type = ctx.graph.input_types(node)[:2]
    geometry = conv_geometry(node, x_type, w_type)
    transposed = node.attrs.get("transposed_weights", 0)
    spatial = len(ctx.outputs[0].shape) - 2
    if depthwise_conv.specialised(geometry):
        depthwise_conv.emit(ctx, geometry, epilogue_for(spatial) if epilogue_for else None)
        return
    if geometry.pointwise and not transposed:
        bias = ctx.inputs[2] if len(ctx.inputs) > 2 else None
        emit_gemm(ctx.builder, ctx.begin, ctx.end, geometry.gemm(bias is not None), ctx.inputs[1].ptr,
                  ctx.inputs[0].ptr, ctx.outputs[0].ptr, bias.ptr if bias is not None else None,
                  epilogue_for(spatial) if epilogue_for else None)
        return
    form = _ChannelVectorConv if transposed else _DirectConv
    epilogue = epilogue_for(spatial if transposed else 1) if epilogue_for else None
    form(ctx, geometry, direct_form_plan(node, geometry, w_type), epilogue).run(ctx.begin, ctx.end)


register_kernel(KernelSpec(("Conv",), conv_check, conv_work_items, emit_conv, batch_items=conv_batch_items))
