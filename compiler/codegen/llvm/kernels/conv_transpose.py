"""ConvTranspose with 1 or more spatial dims, as a gather over output positions.

Output o along a dim reads input i through kernel tap k when o + pad = i * stride + k * dilation.
The geometry is static, so it is worked out here. Along an outer spatial dim, the (tap, input)
pairs feeding one output coordinate form an arithmetic progression: a constant table gives each
output coordinate its first pair and their count. Along the innermost dim, the outputs of one
stride phase (o = phase + stride * j) read input j + shift through each tap of that phase, with a
fixed shift per tap: the input row is staged, zero-padded, in a stack buffer so that output j of
the phase sums stage[j + shift] * w[tap] over the phase's taps, with no bounds tests. That loop
over j is contiguous in the stage and in an accumulator row laid out phase by phase, so it
vectorizes for any stride; each staged load feeds every output channel of the block.

A work item is (image, group, block of output channels, outer output position): it owns whole
output rows and sums into them in a fixed order (input channel, outer taps, inner taps), so
results are the same for any thread count.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, load, store
from compiler.codegen.llvm.kernels.linear_algebra import (FLOATS, linear, multiply_add, rolled_range, stack_buffer,
                                                          unravel, zero_fill)
from compiler.codegen.llvm.kernels.pooling import constant_table, table_row
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node
from compiler.ops.conv_transpose_geometry import conv_transpose_problem, spatial_dims
from compiler.ops.pool_geometry import WindowDim, ceil_div

CHANNEL_BLOCKS = (8, 4, 2, 1)  # output channels per work item, see channel_block
PARALLEL_ITEMS = 8  # work items wanted at least, to spread over threads
TAP_BLOCK = 4  # taps of one stride phase combined in one pass over the accumulator
VECTOR_MULTIPLE = 8  # accumulator phases are padded to this many elements: no scalar remainder loop


def channel_block(out_group: int, other_items: int, sizes=CHANNEL_BLOCKS) -> int:
    """Output channels per work item: the largest of `sizes` (descending, ending in 1) that divides a
    group's output channels and, with `other_items` items along the other dims, leaves PARALLEL_ITEMS
    work items (the smallest that divides when none does)."""
    fitting = [size for size in sizes if out_group % size == 0]
    return next((size for size in fitting if other_items * out_group // size >= PARALLEL_ITEMS), fitting[-1])


class TransposeDim(WindowDim):
    """One spatial dim (compiler/ops/conv_transpose_geometry.py) and how this kernel walks it."""

    @property
    def tap_step(self) -> int:
        """Between consecutive (tap, input) pairs of one output the tap grows by this ..."""
        return self.stride // math.gcd(self.stride, self.dilation)

    @property
    def input_step(self) -> int:
        """... and the input coordinate falls by this."""
        return self.dilation // math.gcd(self.stride, self.dilation)

    def output_taps(self) -> list[tuple[int, int, int]]:
        """Per output coordinate: (first tap, its input coordinate, number of pairs)."""
        rows = []
        for position in range(self.size_out):
            pairs = [(tap, (position + self.pad_begin - tap * self.dilation) // self.stride)
                     for tap in range(self.kernel)
                     if (position + self.pad_begin - tap * self.dilation) % self.stride == 0]
            pairs = [(tap, source) for tap, source in pairs if 0 <= source < self.size_in]
            rows.append((*pairs[0], len(pairs)) if pairs else (0, 0, 0))
        return rows

    @property
    def phase_pitch(self) -> int:
        """Accumulator elements per stride phase: its outputs, rounded up to whole vectors."""
        return ceil_div(ceil_div(self.size_out, self.stride), VECTOR_MULTIPLE) * VECTOR_MULTIPLE

    def phase_taps(self) -> list[list[tuple[int, int]]]:
        """Per stride phase p (outputs p + stride * j): the (tap, shift) pairs by which input j + shift
        feeds output j of the phase; phases past the output have none."""
        return [[(tap, (phase + self.pad_begin - tap * self.dilation) // self.stride) for tap in range(self.kernel)
                 if phase < self.size_out and (phase + self.pad_begin - tap * self.dilation) % self.stride == 0]
                for phase in range(self.stride)]

    @property
    def first_shift(self) -> int:
        """Staged element t holds input t + first_shift (zero outside the input)."""
        return min((shift for taps in self.phase_taps() for _, shift in taps), default=0)

    @property
    def staged(self) -> int:
        last_shift = max((shift for taps in self.phase_taps() for _, shift in taps), default=0)
        return self.phase_pitch + last_shift - self.first_shift

    @property
    def staged_inputs(self) -> tuple[int, int]:
        """The staged elements [low, high) that hold input elements."""
        low = max(0, -self.first_shift)
        return low, max(low, min(self.staged, self.size_in - self.first_shift))


@dataclass(frozen=True)
class TransposeGeometry:
    dtype: str
    batch: int
    channels: int
    group: int
    out_group: int  # output channels per group (W is channels x out_group x kernel)
    dims: tuple[TransposeDim, ...]

    @property
    def in_group(self) -> int:
        return self.channels // self.group

    def item_dims(self, block: int) -> tuple[int, ...]:
        return (self.batch, self.group, self.out_group // block, *(dim.size_out for dim in self.dims[:-1]))

    @property
    def block(self) -> int:
        other_items = self.batch * self.group * math.prod(dim.size_out for dim in self.dims[:-1])
        return channel_block(self.out_group, other_items)


def _geometry(graph: Graph, node: Node) -> TransposeGeometry:
    x_type, w_type = graph.input_types(node)[:2]
    dims = tuple(spatial_dims(graph, node, TransposeDim))
    group = int(node.attrs.get("group", 1))
    return TransposeGeometry(x_type.dtype, x_type.shape[0], x_type.shape[1], group, w_type.shape[1], dims)


def _check(graph: Graph, node: Node) -> str | None:
    dtypes = {t.dtype for t in graph.input_types(node) if t is not None}
    if not dtypes <= set(FLOATS):
        return f"ConvTranspose on {', '.join(sorted(dtypes))} is not compiled by the cpu target (float32/float64 only)"
    return conv_transpose_problem(graph, node)


def _work_items(graph: Graph, node: Node) -> int:
    geometry = _geometry(graph, node)
    return math.prod(geometry.item_dims(geometry.block))


def _emit(ctx: KernelContext) -> None:
    b, g = ctx.builder, _geometry(ctx.graph, ctx.node)
    x, w = ctx.inputs[0], ctx.inputs[1]
    *outer, last = g.dims
    block = g.block
    row_length = last.stride * last.phase_pitch  # one output row of the accumulator, phase by phase
    acc = stack_buffer(b, g.dtype, block * row_length)
    stage = stack_buffer(b, g.dtype, last.staged)
    zero_fill(b, stage, g.dtype, last.staged)  # the staged elements past the input stay zero
    output_tables = [constant_table(ctx.module, dim.output_taps()) for dim in outer]
    with rolled_range(b, ctx.begin, ctx.end, name="item") as item:
        image, group, block_index, *position = unravel(b, item, g.item_dims(block))
        zero_fill(b, acc, g.dtype, block * row_length)
        out_group_first = b.mul(block_index, const_i64(block))  # within the group
        outer_taps = [table_row(b, table, coordinate, 3) for table, coordinate in zip(output_tables, position)]
        with rolled_range(b, 0, g.in_group, name="c") as c:
            channel = linear(b, [group, c], [g.in_group, 1])
            with ExitStack() as loops:
                source = linear(b, [image, channel], x.strides[:2])
                weights = linear(b, [channel, out_group_first], w.strides[:2])
                for axis, ((first_tap, first_input, count), dim) in enumerate(zip(outer_taps, outer)):
                    step = loops.enter_context(rolled_range(b, 0, count, name=f"t{axis}"))
                    tap = b.add(first_tap, b.mul(step, const_i64(dim.tap_step)))
                    coordinate = b.sub(first_input, b.mul(step, const_i64(dim.input_step)))
                    source = linear(b, [coordinate], [x.strides[2 + axis]], source)
                    weights = linear(b, [tap], [w.strides[2 + axis]], weights)
                low, high = last.staged_inputs
                with rolled_range(b, low, high, name="stage") as t:
                    value = load(b, x.ptr, x.dtype, b.add(source, b.add(t, const_i64(last.first_shift))))
                    store(b, value, stage, g.dtype, t)
                for phase, phase_taps in enumerate(last.phase_taps()):
                    for first in range(0, len(phase_taps), TAP_BLOCK):
                        _accumulate(b, g, w, weights, stage, acc, phase, phase_taps[first:first + TAP_BLOCK])
        _store_rows(ctx, g, acc, image, b.add(b.mul(group, const_i64(g.out_group)), out_group_first), position)


def _accumulate(b: ir.IRBuilder, g: TransposeGeometry, w, weights, stage, acc, phase: int, phase_taps) -> None:
    """acc[r, phase, j] += sum over the taps of w[r, tap] * stage[j + shift] for the block's channels r."""
    last, taps = g.dims[-1], w.strides[1]
    row_length = last.stride * last.phase_pitch
    w_values = [[load(b, w.ptr, w.dtype, b.add(weights, const_i64(r * taps + tap))) for tap, _ in phase_taps]
                for r in range(g.block)]
    with rolled_range(b, 0, last.phase_pitch, name="j") as j:
        inputs = [load(b, stage, g.dtype, b.add(j, const_i64(shift - last.first_shift))) for _, shift in phase_taps]
        for r in range(g.block):
            index = b.add(j, const_i64(r * row_length + phase * last.phase_pitch))
            total = load(b, acc, g.dtype, index)
            for weight, value in zip(w_values[r], inputs):
                total = multiply_add(b, weight, value, total)
            store(b, total, acc, g.dtype, index)


def _store_rows(ctx: KernelContext, g: TransposeGeometry, acc, image, first_channel, position) -> None:
    """y = acc + bias for the block's rows, reading each phase of the accumulator contiguously."""
    b, y, last = ctx.builder, ctx.outputs[0], g.dims[-1]
    bias = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    with rolled_range(b, 0, g.block, name="r") as r:
        channel = b.add(first_channel, r)
        out_row = linear(b, [image, channel, *position], y.strides[:-1])
        bias_value = None if bias is None else load(b, bias.ptr, bias.dtype, channel)
        with rolled_range(b, 0, last.stride, name="phase") as phase:
            count = b.udiv(b.sub(const_i64(last.size_out + last.stride - 1), phase), const_i64(last.stride))
            acc_start = linear(b, [r, phase], [last.stride * last.phase_pitch, last.phase_pitch])
            with rolled_range(b, 0, count, name="out") as j:
                value = load(b, acc, g.dtype, b.add(acc_start, j))
                value = value if bias_value is None else b.fadd(value, bias_value)
                store(b, value, y.ptr, y.dtype, linear(b, [phase, j], [1, last.stride], out_row))


register_kernel(KernelSpec(("ConvTranspose",), _check, _work_items, _emit))
