"""Conv with 1 to 3 spatial dims: direct convolution; pointwise convolutions run as a GEMM.

A work item is (image, group, block of output channels, outer output position (depth), block
of output rows, tile of output columns); it owns whole output elements, so results are the
same for any thread count. For each chunk of input channels it first stages the input rows the
block reads into a stack buffer: zero-padded and split by stride phase, at a fixed row pitch.
Output (row, column) and kernel tap (kh, kw) then read stage[phase(kh, kw)][row + shift(kh)]
[column + shift(kw)], so over the flattened (row, column) index q = row * pitch + column every
tap reads contiguous memory: the innermost loop runs over q (the pitch's few extra columns are
computed and dropped) and is long even when rows are short. A row of kernel taps is unrolled,
so each accumulator is loaded and stored once per row of taps, and each staged load feeds every
output channel of the block. A 1-D conv is a 2-D one of height 1.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, load, store
from compiler.codegen.llvm.kernels.linear_algebra import (FLOATS, GemmProblem, Layout, emit_gemm, linear,
                                                          multiply_add, rolled_range, smax, smin, stack_buffer, unravel,
                                                          zero_fill)
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType

BLOCK_POSITIONS = 512  # flattened output positions (rows x pitch) per work item, at most
VECTOR_MULTIPLE = 16  # blocks compute a multiple of this many positions: no scalar remainder loop
COLUMN_TILE = 256  # output columns per work item, for wider rows
CHANNEL_BLOCKS = (16, 8, 4, 2, 1)  # output channels per work item: the largest that divides a group's
TAP_BLOCK = 8  # kernel columns unrolled in one pass over the block
STAGED_ELEMENTS = 4096  # staging budget (L1): a chunk of input channels is staged before any
# of it is read, so reads never wait on a pending copy store


def _row_major(dims) -> tuple[int, ...]:
    return tuple(math.prod(dims[axis + 1:]) for axis in range(len(dims)))


@dataclass(frozen=True)
class ConvGeometry:
    """Static sizes of one Conv node (at least 2 spatial dims); `pads` holds leading pads."""

    dtype: str
    batch: int
    channels: int
    out_channels: int
    group: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    out_size: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]

    @property
    def in_group(self) -> int:
        return self.channels // self.group

    @property
    def out_group(self) -> int:
        return self.out_channels // self.group

    @property
    def pointwise(self) -> bool:
        return all(k == 1 for k in self.kernel) and all(s == 1 for s in self.strides) and \
            not any(self.pads) and self.in_size == self.out_size

    @property
    def channel_block(self) -> int:
        return next(size for size in CHANNEL_BLOCKS if self.out_group % size == 0)

    def shift(self, axis: int, tap: int) -> tuple[int, int]:
        """(stride phase, staged step) where kernel tap `tap` along `axis` reads, relative to output 0."""
        return divmod(tap * self.dilations[axis], self.strides[axis])[::-1]

    def phases(self, axis: int) -> list[int]:
        """The stride phases some kernel tap reads along `axis` (only those are staged)."""
        return sorted({self.shift(axis, tap)[0] for tap in range(self.kernel[axis])})

    @property
    def columns(self) -> int:
        return min(COLUMN_TILE, self.out_size[-1])

    @property
    def pitch(self) -> int:
        """Staged row length: the tile's columns plus the reach of the kernel's columns."""
        return self.columns + self.shift(-1, self.kernel[-1] - 1)[1]

    @property
    def rows(self) -> int:
        """Output rows per block: as many as fit BLOCK_POSITIONS, balanced over the blocks."""
        blocks = math.ceil(self.out_size[-2] / max(1, BLOCK_POSITIONS // self.pitch))
        return math.ceil(self.out_size[-2] / blocks)

    @property
    def staged_rows(self) -> int:
        return self.rows + self.shift(-2, self.kernel[-2] - 1)[1]

    @property
    def positions(self) -> int:
        """Flattened positions every block computes: (rows - 1) * pitch + columns, rounded up
        (positions past a block's real rows and columns read staged zeros or slack, and are dropped)."""
        used = (self.rows - 1) * self.pitch + self.columns
        return math.ceil(used / VECTOR_MULTIPLE) * VECTOR_MULTIPLE

    @property
    def slot(self) -> int:
        """Staged elements per (input channel, outer kernel tap)."""
        return len(self.phases(-2)) * len(self.phases(-1)) * self.staged_rows * self.pitch

    @property
    def item_dims(self) -> tuple[int, ...]:
        """Direct form: (image, group, channel block, *outer output position, row block, column tile)."""
        return (self.batch, self.group, self.out_group // self.channel_block, *self.out_size[:-2],
                math.ceil(self.out_size[-2] / self.rows), math.ceil(self.out_size[-1] / self.columns))

    def gemm(self, bias: bool) -> GemmProblem:
        """The pointwise form: per (image, group), out[m, s] = sum_c w[m, c] * x[c, s] (+ bias[m])."""
        size, cg, mg = math.prod(self.in_size), self.in_group, self.out_group
        return GemmProblem(self.dtype, (self.batch, self.group), mg, size, cg,
                           a=Layout((0, mg * cg), cg, 1),
                           b=Layout((self.channels * size, cg * size), size, 1),
                           out=Layout((self.out_channels * size, mg * size), size, 1),
                           c=Layout((0, mg), 1, 0) if bias else None)


def _leading_pads(node: Node, in_size, kernel, out_size, strides, dilations) -> tuple[int, ...]:
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return (0,) * len(in_size)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max(0, (o - 1) * s + (k - 1) * d + 1 - i)
                  for i, k, o, s, d in zip(in_size, kernel, out_size, strides, dilations)]
        return tuple(t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals)
    return tuple(node.attrs.get("pads", [0] * 2 * len(in_size))[:len(in_size)])


def conv_geometry(node: Node, x_type: TensorType, w_type: TensorType) -> ConvGeometry:
    """The geometry of a Conv-like `node` with input `x_type` and weight `w_type` (integer convs reuse it)."""
    in_size, kernel = x_type.shape[2:], w_type.shape[2:]
    rank = len(in_size)
    out_size = node.outputs[0].shape[2:]
    strides = tuple(node.attrs.get("strides", [1] * rank))
    dilations = tuple(node.attrs.get("dilations", [1] * rank))
    pads = _leading_pads(node, in_size, kernel, out_size, strides, dilations)
    if rank == 1:  # a 2-D conv of height 1 (same memory layout)
        in_size, kernel, out_size = (1, *in_size), (1, *kernel), (1, *out_size)
        strides, dilations, pads = (1, *strides), (1, *dilations), (0, *pads)
    return ConvGeometry(x_type.dtype, x_type.shape[0], x_type.shape[1], w_type.shape[0],
                        int(node.attrs.get("group", 1)), tuple(in_size), tuple(kernel), tuple(out_size),
                        strides, dilations, pads)


class _DirectConv:
    """Emits the direct form; see the module docstring."""

    def __init__(self, ctx: KernelContext, geometry: ConvGeometry):
        self.b, self.g = ctx.builder, geometry
        self.x, self.w, self.y = ctx.inputs[0].ptr, ctx.inputs[1].ptr, ctx.outputs[0].ptr
        self.bias = ctx.inputs[2].ptr if len(ctx.inputs) > 2 and ctx.inputs[2] is not None else None
        g = geometry
        self.x_strides = _row_major((g.batch, g.channels, *g.in_size))
        self.y_strides = _row_major((g.batch, g.out_channels, *g.out_size))
        self.w_strides = _row_major((g.out_channels, g.in_group, *g.kernel))
        self.outer_taps = math.prod(g.kernel[:-2])
        self.mc, self.chunk = g.channel_block, max(1, min(g.in_group, STAGED_ELEMENTS // (self.outer_taps * g.slot)))
        self.blocks = {phases: index for index, phases in enumerate(
            (row, column) for row in g.phases(-2) for column in g.phases(-1))}
        self.acc = stack_buffer(self.b, g.dtype, self.mc * g.positions)
        reach = max(self._tap_offset(kh, kw) for kh in range(g.kernel[-2]) for kw in range(g.kernel[-1])) + g.positions
        stage_size = (self.chunk * self.outer_taps - 1) * g.slot + max(g.slot, reach)
        self.stage = stack_buffer(self.b, g.dtype, stage_size)
        # Dropped positions of the last slot read the slack past it, which is never staged: zero it
        # once rather than compute on stack garbage (denormals and NaNs are slow).
        zero_fill(self.b, self.stage, g.dtype, stage_size)

    def run(self, begin: ir.Value, end: ir.Value) -> None:
        b, g = self.b, self.g
        with rolled_range(b, begin, end, name="item") as item:
            image, group, block, *position, row_block, column_tile = unravel(b, item, g.item_dims)
            first_channel = b.add(b.mul(group, const_i64(g.out_group)), b.mul(block, const_i64(self.mc)))
            row0, column0 = b.mul(row_block, const_i64(g.rows)), b.mul(column_tile, const_i64(g.columns))
            rows = smin(b, const_i64(g.rows), b.sub(const_i64(g.out_size[-2]), row0))
            columns = smin(b, const_i64(g.columns), b.sub(const_i64(g.out_size[-1]), column0))
            zero_fill(b, self.acc, g.dtype, self.mc * g.positions)
            first_input = b.mul(group, const_i64(g.in_group))
            weights = b.mul(first_channel, const_i64(self.w_strides[0]))

            def stage(plane, slot, weight_offset):
                self._stage(plane, slot, row0, column0)

            def accumulate(plane, slot, weight_offset):
                self._accumulate(slot, b.add(weights, weight_offset))

            with rolled_range(b, 0, g.in_group, self.chunk, name="c0") as c0:
                chunk = smin(b, const_i64(self.chunk), b.sub(const_i64(g.in_group), c0))
                planes = (image, b.add(first_input, c0), c0, chunk, position)
                self._for_each_plane(*planes, stage)
                self._for_each_plane(*planes, accumulate)
            self._store(image, first_channel, position, row0, column0, rows, columns)

    def _for_each_plane(self, image, first_input, c0, chunk, position, visit) -> None:
        """visit(input plane index, staging slot, weight offset) for every input plane of the channel
        chunk that an outer kernel tap reaches; planes in the padding are skipped."""
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
            slot = b.mul(linear(b, [c, *taps], (self.outer_taps, *_row_major(g.kernel[:-2]))), const_i64(g.slot))
            visit(plane, slot, linear(b, [b.add(c0, c), *taps], self.w_strides[1:-2]))

    def _stage(self, plane: ir.Value, slot: ir.Value, row0: ir.Value, column0: ir.Value) -> None:
        """Copy the input rows the block reads into `slot`: zero-padded, one block per stride phase."""
        b, g = self.b, self.g
        zero_fill(b, b.gep(self.stage, [slot]), g.dtype, g.slot)
        row_start = b.sub(b.mul(row0, const_i64(g.strides[-2])), const_i64(g.pads[-2]))
        column_start = b.sub(b.mul(column0, const_i64(g.strides[-1])), const_i64(g.pads[-1]))
        for (row_phase, column_phase), phase_block in self.blocks.items():
            first_row = b.add(row_start, const_i64(row_phase))  # input row of staged row 0
            first_column = b.add(column_start, const_i64(column_phase))
            block = b.add(slot, const_i64(phase_block * g.staged_rows * g.pitch))
            with rolled_range(b, *self._inside(first_row, -2, g.staged_rows), name="stage_row") as i:
                source = linear(b, [b.add(first_row, linear(b, [i], [g.strides[-2]]))], [g.in_size[-1]], plane)
                target = linear(b, [i], [g.pitch], block)
                with rolled_range(b, *self._inside(first_column, -1, g.pitch), name="stage_column") as t:
                    value = load(b, self.x, g.dtype, linear(b, [t], [g.strides[-1]], b.add(source, first_column)))
                    store(b, value, self.stage, g.dtype, b.add(target, t))

    def _tap_offset(self, kh: int, kw: int) -> int:
        """Where kernel tap (kh, kw) of output position 0 sits in a staging slot."""
        (row_phase, row_shift), (column_phase, column_shift) = self.g.shift(-2, kh), self.g.shift(-1, kw)
        return (self.blocks[row_phase, column_phase] * self.g.staged_rows + row_shift) * self.g.pitch + column_shift

    def _inside(self, first: ir.Value, axis: int, count: int) -> tuple[ir.Value, ir.Value]:
        """The steps [low, high) of first + step * stride that fall inside the input along `axis`."""
        b, stride = self.b, self.g.strides[axis]

        def steps_to(distance):  # ceil(max(distance, 0) / stride)
            distance = smax(b, distance, const_i64(0))
            return distance if stride == 1 else b.udiv(b.add(distance, const_i64(stride - 1)), const_i64(stride))

        high = smin(b, const_i64(count), steps_to(b.sub(const_i64(self.g.in_size[axis]), first)))
        return steps_to(b.neg(first)), high

    def _accumulate(self, slot: ir.Value, weights: ir.Value) -> None:
        """acc[r, q] += w[r, kh, kw] * staged(q, kh, kw) over the kernel plane, TAP_BLOCK columns per pass."""
        b, g = self.b, self.g
        kernel_height, kernel_width = g.kernel[-2:]
        for kh in range(kernel_height):
            for first_tap in range(0, kernel_width, TAP_BLOCK):
                taps = range(first_tap, min(first_tap + TAP_BLOCK, kernel_width))
                offsets = [[r * self.w_strides[0] + kh * kernel_width + kw for kw in taps] for r in range(self.mc)]
                w = [[load(b, self.w, g.dtype, b.add(weights, const_i64(offset))) for offset in row] for row in offsets]
                starts = [b.add(slot, const_i64(self._tap_offset(kh, kw))) for kw in taps]
                with rolled_range(b, 0, g.positions, name="q") as q:
                    inputs = [load(b, self.stage, g.dtype, b.add(start, q)) for start in starts]
                    for r in range(self.mc):
                        index = b.add(const_i64(r * g.positions), q)
                        total = load(b, self.acc, g.dtype, index)
                        for weight, value in zip(w[r], inputs):
                            total = multiply_add(b, weight, value, total)
                        store(b, total, self.acc, g.dtype, index)

    def _store(self, image, first_channel, position, row0, column0, rows, columns) -> None:
        """y = acc + bias over the block, dropping the pitch's extra columns."""
        b, g = self.b, self.g
        for r in range(self.mc):
            channel = b.add(first_channel, const_i64(r))
            bias = None if self.bias is None else load(b, self.bias, g.dtype, channel)
            with rolled_range(b, 0, rows, name="out_row") as row:
                out = linear(b, [image, channel, *position, b.add(row0, row), column0], self.y_strides)
                acc_row = linear(b, [row], [g.pitch], const_i64(r * g.positions))
                with rolled_range(b, 0, columns, name="out_column") as column:
                    value = load(b, self.acc, g.dtype, b.add(acc_row, column))
                    store(b, value if bias is None else b.fadd(value, bias), self.y, g.dtype, b.add(out, column))


def _check(graph: Graph, node: Node) -> str | None:
    types = [t for t in graph.input_types(node) if t is not None]
    dtypes = {t.dtype for t in types}
    if not dtypes <= set(FLOATS):
        return f"Conv on {', '.join(sorted(dtypes))} is not compiled by the cpu target (float32/float64 only)"
    if not 3 <= len(types[0].shape) <= 5:
        return f"Conv with {len(types[0].shape) - 2} spatial dims is not compiled by the cpu target (1 to 3 only)"
    return None


def _work_items(graph: Graph, node: Node) -> int:
    geometry = conv_geometry(node, *graph.input_types(node)[:2])
    return geometry.gemm(bias=False).work_items if geometry.pointwise else math.prod(geometry.item_dims)


def _emit(ctx: KernelContext) -> None:
    geometry = conv_geometry(ctx.node, *ctx.graph.input_types(ctx.node)[:2])
    if geometry.pointwise:
        bias = ctx.inputs[2] if len(ctx.inputs) > 2 else None
        emit_gemm(ctx.builder, ctx.begin, ctx.end, geometry.gemm(bias is not None), ctx.inputs[1].ptr,
                  ctx.inputs[0].ptr, ctx.outputs[0].ptr, bias.ptr if bias is not None else None)
    else:
        _DirectConv(ctx, geometry).run(ctx.begin, ctx.end)


register_kernel(KernelSpec(("Conv",), _check, _work_items, _emit))
