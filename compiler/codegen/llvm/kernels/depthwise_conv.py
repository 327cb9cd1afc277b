"""Depthwise Conv (group == channels == output channels, 1 or 2 spatial dims) on explicit vectors.

The direct form (convolution.py) runs register tiles of output channels x positions over input
channels; a depthwise conv has one input channel per output channel, so its tiles are one row
deep and the packing and staging around them cost more than the 9 FMAs per output they feed.
Here a work item is (image, channel, block of output rows): it stages the input rows the block
reads into a stack buffer split by stride phase (as the direct form does: zero padding, then
output (row, column) and tap (kh, kw) read stage[phase(kh, kw)][row + shift(kh)][column +
shift(kw)], so every tap reads contiguous vectors; strided rows are split into their column
phases with shufflevector), broadcasts the channel's kh x kw weights once, and sweeps register
blocks of R output rows x NV vectors along the row. Within a block a staged vector is loaded
once for every (output row, tap) that reads it, so output rows reuse input rows from registers
(with stride 2, through the row phases). Vectors may instead run over the flattened rows x pitch
positions (narrow outputs, where the cost model says so). The padding sits in stage positions
that hold zeros from the start of the call, and rows outside the input are zero-filled, so no
element is branched on. Every output sums its taps in (kh, kw) order in one item, so results do
not depend on blocking or threads; a store pass adds the bias and applies the fused epilogue.
Kernels of more than MAX_TAPS taps, or rows too wide to stage, take the direct form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I1, I8, I32, I64, PTR, const_i64, element_type, load, store
from compiler.codegen.llvm.kernels.gemm_microkernel import (FMA_PORTS, LOAD_PORTS, fma, load_vector, masked_load,
                                                            masked_store, splat, split_cycles, store_vector,
                                                            vector_lanes)
from compiler.codegen.llvm.kernels.conv_geometry import ConvGeometry
from compiler.codegen.llvm.kernels.linear_algebra import (Epilogue, linear, rolled_range, smax, smin, stack_buffer,
                                                          unravel, zero_fill)
from compiler.codegen.llvm.kernels.registry import KernelContext

MAX_TAPS = 49  # kernel taps unrolled per register block at most (7 x 7)
STAGED_ELEMENTS = 4096  # stage plus output block per item (L1), by which the row block is chosen
MAX_STAGE = 16384  # elements of stage for one output row at most: wider rows take the direct form (stack room)
BLOCK_ROWS = range(1, 9)  # output rows per register block tried
CACHE_LINE = 64  # bytes: an unaligned vector load that crosses one costs a second load
STAGE_CYCLES, STRIDED_STAGE_CYCLES, STORE_CYCLES = 0.25, 1.0, 1.0  # per staged element; per output
COPY_CYCLES = 0.5  # per output of flat blocks, copied without the pitch's extra columns before the store
ITEM_CYCLES = 60  # fixed cost of a work item (weights, loop setup)
BLOCK_CYCLES = 3  # fixed cost of a register block (loop, addresses)
FALSE = ir.Constant(I1, 0)  # llvm.memset/memcpy: not volatile


def specialised(g: ConvGeometry) -> bool:
    """Whether this kernel computes the conv (else the direct form does)."""
    return len(g.kernel) == 2 and g.group == g.channels == g.out_channels and fits(g)


def fits(g: ConvGeometry) -> bool:
    """Whether the kernel's taps unroll and a row's stage fits (2-D, one input channel per group)."""
    return math.prod(g.kernel) <= MAX_TAPS and g.phase_count * (1 + _reach(g, -2)) * _pitch(g) <= MAX_STAGE


def _reach(g: ConvGeometry, axis: int) -> int:
    """Staged steps past an output's own that the last kernel tap reads along `axis`."""
    return g.shift(axis, g.kernel[axis] - 1)[1]


def _pitch(g: ConvGeometry) -> int:
    return g.out_size[-1] + _reach(g, -1)


@dataclass(frozen=True)
class DepthwisePlan:
    """Output rows per item; the register block (`block_rows` rows x `vectors` vectors of `lanes`); flat:
    vectors run over the item's flattened rows x pitch positions (one block row)."""

    g: ConvGeometry
    rows: int
    block_rows: int
    vectors: int
    lanes: int
    flat: bool

    @property
    def pitch(self) -> int:
        return _pitch(self.g)

    @property
    def span(self) -> int:
        """Positions one block covers along a row (or along the flattened positions)."""
        return self.vectors * self.lanes

    @property
    def groups(self) -> int:
        """Register blocks down the item's rows."""
        return 1 if self.flat else math.ceil(self.rows / self.block_rows)

    @property
    def chunks(self) -> int:
        """Register blocks along a row (flat: along the flattened positions)."""
        positions = self.rows * self.pitch if self.flat else self.g.out_size[-1]
        return math.ceil(positions / self.span)

    @property
    def computed_rows(self) -> int:
        return self.rows if self.flat else self.groups * self.block_rows

    @property
    def staged_rows(self) -> int:
        """Staged rows per row phase."""
        return self.computed_rows + _reach(self.g, -2)

    @property
    def block_offsets(self) -> list[int]:
        """Where each accumulator of a register block sits, relative to the block's first position."""
        return [r * self.pitch + n * self.lanes for r in range(self.block_rows) for n in range(self.vectors)]

    @property
    def out_pitch(self) -> int:
        """Row pitch of the item's output buffer: the output width where blocks run along rows (their last
        vectors are stored masked), the stage's pitch where they run over flattened rows."""
        return self.pitch if self.flat else self.g.out_size[-1]

    @property
    def out_size(self) -> int:
        """Positions of the item's output buffer (flat: with what the last vectors overhang)."""
        if not self.flat:
            return self.computed_rows * self.out_pitch
        return (self.chunks - 1) * self.span + max(self.block_offsets) + self.lanes

    @property
    def block_size(self) -> int:
        """Stage elements per phase block: its staged rows, then a vector of room for what a strided row's
        last vector writes past them."""
        return self.staged_rows * self.pitch + self.lanes

    def tap_offsets(self) -> list[int]:
        """Where tap (kh, kw) of output position 0 sits in the stage, in (kh, kw) order."""
        g, blocks = self.g, _phase_blocks(self.g)
        offsets = []
        for kh in range(g.kernel[-2]):
            for kw in range(g.kernel[-1]):
                (row_phase, row_step), (column_phase, column_step) = g.shift(-2, kh), g.shift(-1, kw)
                offsets.append(blocks[row_phase, column_phase] * self.block_size + row_step * self.pitch
                               + column_step)
        return offsets

    @property
    def stage_size(self) -> int:
        """Staged elements, with room for what the last block reads past them."""
        last_read = ((self.groups - 1) * self.block_rows * self.pitch + (self.chunks - 1) * self.span
                     + max(self.block_offsets) + max(self.tap_offsets()) + self.lanes)
        return max(self.g.phase_count * self.block_size, last_read)

    @property
    def item_dims(self) -> tuple[int, int, int]:
        g = self.g
        return g.batch, g.out_channels, math.ceil(g.out_size[-2] / self.rows)

    def block_loads(self) -> int:
        """Vector loads of one register block: one per distinct staged vector its (output, tap) pairs read."""
        return len({o + t for o in self.block_offsets for t in self.tap_offsets()})

    def cycles(self) -> float:
        """Modelled cycles of all items: register blocks (FMA or load bound), staging, the store pass."""
        g = self.g
        taps = math.prod(g.kernel)
        itemsize = np.dtype(g.dtype).itemsize
        loads = self.block_loads() * (1 + (self.lanes - 1) * itemsize / CACHE_LINE)  # taps start anywhere
        block = max(len(self.block_offsets) * taps / FMA_PORTS, loads / LOAD_PORTS) + BLOCK_CYCLES
        stage_cost = STAGE_CYCLES if g.strides[-1] == 1 else STRIDED_STAGE_CYCLES
        store_cost = STORE_CYCLES + (COPY_CYCLES if self.out_pitch != g.out_size[-1] else 0)
        item = (self.groups * self.chunks * block + stage_cost * g.phase_count * self.staged_rows * self.pitch
                + store_cost * self.rows * g.out_size[-1] + ITEM_CYCLES)
        return split_cycles([item] * math.prod(self.item_dims))


def _phase_blocks(g: ConvGeometry) -> dict[tuple[int, int], int]:
    """Stage block of each (row phase, column phase) that some tap reads."""
    pairs = [(row, column) for row in g.phases(-2) for column in g.phases(-1)]
    return {pair: index for index, pair in enumerate(pairs)}


@cache
def depthwise_plan(g: ConvGeometry) -> DepthwisePlan:
    """The plan of the fewest modelled cycles among register blocks that fit the registers beside the
    broadcast weights, each with the output rows per item that keep its stage and output in STAGED_ELEMENTS."""
    lanes, height = vector_lanes(g.dtype), g.out_size[-2]
    registers = 32 if lanes * np.dtype(g.dtype).itemsize >= 64 else 16
    accumulators = registers - min(math.prod(g.kernel), registers // 2) - 2
    most_rows = max(1, STAGED_ELEMENTS // ((g.phase_count + 1) * _pitch(g)) - _reach(g, -2))
    rows = math.ceil(height / math.ceil(height / most_rows))  # balanced row blocks
    plans = []
    for flat in (False, True):
        positions = rows * _pitch(g) if flat else g.out_size[-1]
        for block_rows in (1,) if flat else [r for r in BLOCK_ROWS if r <= rows]:
            for vectors in range(1, min(accumulators // block_rows, math.ceil(positions / lanes)) + 1):
                plans.append(DepthwisePlan(g, rows, block_rows, vectors, lanes, flat))
    return min(plans, key=DepthwisePlan.cycles)


def work_items(g: ConvGeometry) -> int:
    return math.prod(depthwise_plan(g).item_dims)


class DepthwiseConv:
    """Emits the plan; see the module docstring. The stage, the register blocks and the item's output buffer
    hold g.dtype; the input (`x_dtype`) is converted to it while staging (_convert), the weights by _weight,
    and _finisher maps the sums to what is stored (`y_dtype`), so integer convs reuse the loops
    (int8_depthwise.py). An output channel reads input channel channel // (out_channels / channels)."""

    def __init__(self, ctx: KernelContext, g: ConvGeometry, epilogue: Epilogue | None = None):
        self.b, self.g, self.plan = ctx.builder, g, depthwise_plan(g)
        self.x, self.w, self.y = ctx.inputs[0].ptr, ctx.inputs[1].ptr, ctx.outputs[0].ptr
        self.x_dtype, self.y_dtype = ctx.inputs[0].dtype, ctx.outputs[0].dtype
        self.bias = ctx.inputs[2].ptr if len(ctx.inputs) > 2 and ctx.inputs[2] is not None else None
        self.epilogue = epilogue
        self.stage = stack_buffer(self.b, g.dtype, self.plan.stage_size)
        self.out = stack_buffer(self.b, g.dtype, self.plan.out_size)
        self.compact = self.out if self.plan.out_pitch == g.out_size[-1] else \
            stack_buffer(self.b, g.dtype, self.plan.rows * g.out_size[-1])

    def run(self, begin: ir.Value, end: ir.Value) -> None:
        b, g, plan = self.b, self.g, self.plan
        zero_fill(b, self.stage, g.dtype, plan.stage_size)  # the padding positions stay zero from here on
        taps = math.prod(g.kernel)
        with rolled_range(b, begin, end, name="item") as item:
            image, channel, row_block = unravel(b, item, plan.item_dims)
            row0 = b.mul(row_block, const_i64(plan.rows))
            source = channel if g.out_channels == g.channels else \
                b.udiv(channel, const_i64(g.out_channels // g.channels))
            plane = linear(b, [image, source], [g.channels * math.prod(g.in_size), math.prod(g.in_size)])
            self._stage(plane, row0)
            self._sweep([splat(b, self._weight(channel, tap), plan.lanes) for tap in range(taps)])
            self._store(image, channel, row0)

    def _weight(self, channel: ir.Value, tap: int) -> ir.Value:
        """Tap `tap` of the channel's kernel, as g.dtype."""
        return load(self.b, self.w, self.g.dtype, linear(self.b, [channel], [math.prod(self.g.kernel)],
                                                         const_i64(tap)))

    def _convert(self, value: ir.Value) -> ir.Value:
        """A loaded input vector (x_dtype) as staged (g.dtype)."""
        return value

    def _finisher(self, channel: ir.Value) -> Callable[[ir.Value, ir.Value, ir.Value], ir.Value]:
        """What maps a sum (g.dtype) at output (plane, column) of `channel` to the value stored: bias, epilogue."""
        b, epilogue = self.b, self.epilogue
        bias = None if self.bias is None else load(b, self.bias, self.g.dtype, channel)

        def finish(value: ir.Value, plane: ir.Value, column: ir.Value) -> ir.Value:
            value = value if bias is None else b.fadd(value, bias)
            return value if epilogue is None else epilogue(b, value, plane, column)
        return finish

    def _stage(self, plane: ir.Value, row0: ir.Value) -> None:
        """Each row phase's staged rows, in order: the input row's columns of each column phase, or zeros for
        a row outside the input (above, below, or past the last output row)."""
        b, g, plan = self.b, self.g, self.plan
        stride, pad, blocks = g.strides[-2], g.pads[-2], _phase_blocks(g)
        for row_phase in g.phases(-2):
            first = b.add(b.sub(b.mul(row0, const_i64(stride)), const_i64(pad)), const_i64(row_phase))
            low, high = self._rows_inside(first)
            for start, stop, copy in ((const_i64(0), low, False), (low, high, True),
                                      (high, const_i64(plan.staged_rows), False)):
                with rolled_range(b, start, stop, name="stage_row") as i:
                    source = linear(b, [b.add(first, b.mul(i, const_i64(stride)))], [g.in_size[-1]], plane)
                    targets = {phase: linear(b, [i], [plan.pitch], const_i64(block * plan.block_size))
                               for (row, phase), block in blocks.items() if row == row_phase}
                    if copy and (g.strides[-1] > 1 or self.x_dtype != g.dtype):
                        self._deinterleave_row(source, targets)
                    else:
                        for phase, target in targets.items():
                            self._stage_row(source, target, phase, copy)

    def _rows_inside(self, first: ir.Value) -> tuple[ir.Value, ir.Value]:
        """The staged rows [low, high) whose input rows first + i * stride lie inside the input."""
        b, g, stride = self.b, self.g, self.g.strides[-2]

        def steps_to(distance):  # ceil(max(distance, 0) / stride), clamped to the staged rows
            distance = smax(b, distance, const_i64(0))
            steps = distance if stride == 1 else b.udiv(b.add(distance, const_i64(stride - 1)), const_i64(stride))
            return smin(b, steps, const_i64(self.plan.staged_rows))

        low = steps_to(b.neg(first))
        return low, smax(b, low, steps_to(b.sub(const_i64(g.in_size[-2]), first)))

    def _columns(self, phase: int) -> tuple[int, int]:
        """The positions [low, high) of column phase `phase` that fall inside the input row (the same for every
        item)."""
        g = self.g
        stride, pad, width = g.strides[-1], g.pads[-1], g.in_size[-1]
        return max(0, math.ceil((pad - phase) / stride)), min(self.plan.pitch, (width - 1 + pad - phase) // stride + 1)

    def _stage_row(self, source: ir.Value, target: ir.Value, phase: int, copy: bool) -> None:
        """stage[target + j] = x[source + column(j)] for the positions j of column phase `phase` inside the
        input row (unstrided, unconverted columns), or zeros there; the other positions (padding) are left as
        they are."""
        b, g = self.b, self.g
        low, high = self._columns(phase)
        if high <= low:
            return
        size = const_i64((high - low) * np.dtype(g.dtype).itemsize)
        start = self._address(self.stage, b.add(target, const_i64(low)))
        if copy:
            first_column = low + phase - g.pads[-1]
            b.call(b.module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64]),
                   [start, self._address(self.x, b.add(source, const_i64(first_column))), size, FALSE])
        else:
            b.call(b.module.declare_intrinsic("llvm.memset", [PTR, I64]), [start, ir.Constant(I8, 0), size, FALSE])

    def _deinterleave_row(self, source: ir.Value, targets: dict[int, ir.Value]) -> None:
        """Every column phase of a strided (or converted) input row from the same loads: per `stride` x lanes
        input columns, `stride` loads, then for each staged phase its lanes (shufflevector), converted, stored
        as one vector. Past the last column some phase stages, loads are masked (zeros past the row) and the
        phases' lanes past their last position zeroed; those zeros land on padding, on positions of the
        following rows (staged later) or in the room after the block. Before it, no lane needs either mask
        (both cost shuffle-port uops)."""
        b, g, plan = self.b, self.g, self.plan
        stride, width, lanes = g.strides[-1], g.in_size[-1], plan.lanes
        lasts = [(self._columns(phase)[1] - 1) * stride + phase - g.pads[-1] for phase in targets]  # last read
        last, step = max(lasts), stride * lanes
        split = max(0, (min(lasts) + 1) // step * step)  # columns whose loads and positions all lie inside
        for start, stop, edge in ((0, split, False), (split, last + 1, True)):
            with rolled_range(b, start, stop, step, name="stage_columns") as column:
                firsts = [b.add(column, const_i64(k * lanes)) for k in range(stride)]
                loaded = [masked_load(b, self.x, self.x_dtype, b.add(source, first), lanes,
                                      b.sub(const_i64(width), first)) if edge else
                          load_vector(b, self.x, self.x_dtype, b.add(source, first), lanes) for first in firsts]
                self._store_phases(loaded, column, targets, edge)

    def _store_phases(self, loaded: list[ir.Value], column: ir.Value, targets: dict[int, ir.Value],
                      edge: bool) -> None:
        """Each staged phase's lanes of the `stride` vectors loaded from input column `column` on, converted, at
        its position; at the row's edge, lanes past the phase's last position are zeroed."""
        b, g, lanes = self.b, self.g, self.plan.lanes
        stride, pad = g.strides[-1], g.pads[-1]
        lane_ids = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
        for residue in range(stride):
            phase = (residue + pad) % stride
            if phase not in targets:
                continue
            position = b.udiv(b.add(column, const_i64(residue + pad - phase)), const_i64(stride))
            value = self._convert(_every(b, loaded, stride, residue))
            if edge:
                inside = b.icmp_signed("<", lane_ids, splat(b, b.sub(const_i64(self._columns(phase)[1]), position),
                                                             lanes))
                value = b.select(inside, value, ir.Constant(value.type, None))
            store_vector(b, value, self.stage, g.dtype, b.add(targets[phase], position))

    def _address(self, base: ir.Value, index: ir.Value) -> ir.Value:
        return self.b.gep(base, [index], source_etype=element_type(self.g.dtype), inbounds=True)

    def _sweep(self, weights: list[ir.Value]) -> None:
        """out[block + offset] = sum over taps of w[tap] * stage[q0 + offset + tap offset], one register block
        per (row group, chunk along the row); a staged vector read by several (offset, tap) pairs loads once."""
        b, g, plan = self.b, self.g, self.plan
        taps, offsets, width = plan.tap_offsets(), plan.block_offsets, g.out_size[-1]
        with rolled_range(b, 0, plan.groups, name="row_group") as group:
            with rolled_range(b, 0, plan.chunks, name="chunk") as chunk:
                q0 = linear(b, [group, chunk], [plan.block_rows * plan.pitch, plan.span])
                loaded: dict[int, ir.Value] = {}
                sums: list[ir.Value | None] = [None] * len(offsets)
                for weight, tap in zip(weights, taps):
                    for index, offset in enumerate(offsets):
                        if offset + tap not in loaded:
                            loaded[offset + tap] = load_vector(b, self.stage, g.dtype,
                                                               b.add(q0, const_i64(offset + tap)), plan.lanes)
                        vector = loaded[offset + tap]
                        sums[index] = b.fmul(weight, vector) if sums[index] is None else \
                            fma(b, weight, vector, sums[index])
                out0 = linear(b, [group, chunk], [plan.block_rows * plan.out_pitch, plan.span])
                for index, value in enumerate(sums):
                    row, vector = divmod(index, plan.vectors)
                    out = b.add(out0, const_i64(row * plan.out_pitch + vector * plan.lanes))
                    if plan.flat or width % plan.span == 0:
                        store_vector(b, value, self.out, g.dtype, out)
                    else:  # the row's last vectors stop at its last column
                        column = b.add(b.mul(chunk, const_i64(plan.span)), const_i64(vector * plan.lanes))
                        masked_store(b, value, self.out, g.dtype, out, b.sub(const_i64(width), column))

    def _store(self, image: ir.Value, channel: ir.Value, row0: ir.Value) -> None:
        """y = epilogue(out + bias) over the item's rows, as one loop over the plane's positions, which LLVM
        vectorizes whatever the row width (flat blocks' rows are first copied without the pitch's extra
        columns)."""
        b, g, plan = self.b, self.g, self.plan
        width, size = g.out_size[-1], np.dtype(g.dtype).itemsize
        finish = self._finisher(channel)
        rows = smin(b, const_i64(plan.rows), b.sub(const_i64(g.out_size[-2]), row0))
        if self.compact is not self.out:
            with rolled_range(b, 0, rows, name="compact_row") as row:
                b.call(b.module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64]),
                       [self._address(self.compact, b.mul(row, const_i64(width))),
                        self._address(self.out, b.mul(row, const_i64(plan.out_pitch))), const_i64(width * size),
                        FALSE])
        plane = linear(b, [image, channel], [g.out_channels * math.prod(g.out_size), math.prod(g.out_size)])
        first = b.mul(row0, const_i64(width))
        with rolled_range(b, 0, b.mul(rows, const_i64(width)), name="out_position") as position:
            column = b.add(first, position)
            value = finish(load(b, self.compact, g.dtype, position), plane, column)
            store(b, value, self.y, self.y_dtype, b.add(plane, column))


def _every(builder: ir.IRBuilder, vectors: list[ir.Value], stride: int, first: int) -> ir.Value:
    """Lanes first, first + stride, first + 2 * stride, ... of the vectors laid end to end: a deinterleave, one
    shufflevector over the first two, then one more per further vector (stride 1: the one vector)."""
    if stride == 1:
        return vectors[0]
    lanes = vectors[0].type.count
    sources = [first + lane * stride for lane in range(lanes)]

    def shuffle(one, two, mask):
        return builder.shuffle_vector(one, two, ir.Constant(ir.VectorType(I32, lanes), mask))

    picked = shuffle(vectors[0], vectors[1], [e if e < 2 * lanes else 0 for e in sources])
    for k, vector in enumerate(vectors[2:], start=2):
        picked = shuffle(picked, vector, [lane if e < k * lanes else lanes + e - k * lanes if e < (k + 1) * lanes else 0
                                          for lane, e in enumerate(sources)])
    return picked


def emit(ctx: KernelContext, g: ConvGeometry, epilogue: Epilogue | None) -> None:
    """The kernel of a depthwise Conv-like node (inputs X, W, optional B) whose geometry is specialised;
    the epilogue's columns span the output's spatial dims."""
    DepthwiseConv(ctx, g, epilogue).run(ctx.begin, ctx.end)
