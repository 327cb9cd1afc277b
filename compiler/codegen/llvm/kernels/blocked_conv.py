"""kiln::BlockedConv (compiler/ops/blocked_conv.py): a 2-D conv over the blocked channel layout NCHWc.

A work item is (image, group of G output channels, block of output rows); it owns whole output
elements, so results are the same for any thread count. Its register tiles (gemm_microkernel.py) hold
R output columns x the group's G / c channel vectors: each reduction step loads the G weights of one
(input channel, tap) as vectors and broadcasts the input of each of the R columns, read in place, since
a blocked input keeps the c channels of one pixel together. Nothing is staged or transposed.

The item's accumulators sit in a small buffer, [rows, OW, G]: more rows per item read the weights fewer
times. For each run of input channel blocks, each of the item's rows and each kernel row inside the
image, the tiles sweep the output row. A 1x1 kernel's tiles step through the run's blocks (`chunk` of
them, so that the weights read meanwhile stay in L1) with a block's c_in channels unrolled; a wider
kernel's step through one block's channels with the kernel columns unrolled (BlockedPlan.channel_steps:
a few instructions per tile instead of thousands, which LLVM compiles in a fraction of the time), and with
every kernel row's too for output rows whose window lies inside the image, so the accumulators go back to
memory once per block instead of once per kernel row (Inception-v2 0.97x its time, VGG19's 3x3 convs 0.97-0.99x).
Columns whose taps reach into the left or right padding are tiled apart, with only the taps inside the
image, so no tile reads padding; when an item holds the whole image, or several rows of a narrow one,
those columns are tiled down its rows instead (Inception-v2 0.965x its time at 1 thread, its 14 x 14 and
7 x 7 3x3 convs 0.8-0.95x). A last pass adds the bias and applies the epilogue while storing the output's vectors
(a single run stores each tile's columns right after the tile).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, element_type, load, store
from compiler.codegen.llvm.kernels import blocked_depthwise
from compiler.codegen.llvm.kernels.conv_geometry import ConvGeometry, column_runs
from compiler.codegen.llvm.kernels.convolution import conv_check
from compiler.codegen.llvm.kernels.fused_linear import Epilogue as FusedEpilogue
from compiler.codegen.llvm.kernels.gemm_microkernel import (MicroTile, Operand, cache_bytes, choose_tile,
                                                            emit_register_tile)
from compiler.codegen.llvm.kernels.linear_algebra import (Epilogue, linear, rolled_range, smin, stack_buffer, unravel,
                                                          zero_fill)
from compiler.codegen.llvm.kernels.registry import BatchItems, KernelContext, KernelSpec, batch_major, register_kernel
from compiler.ir.graph import KILN_DOMAIN, Graph, Node

L1_WEIGHTS_SHARE = 1.0  # of L1d, for the weights a run of input channel blocks reads per kernel row, at most:
# one run stores each tile right after it, which is worth more than keeping the weights well inside L1 (32 KB of a
# 48 KB L1d made ResNet-50's 256-channel 1x1 convs one run, 0.93x their time against 24 KB; the whole 32 KB L1d of
# AMD Zen 4 makes its 128 -> 512 ones one run: ResNet-50 0.99x, SqueezeNet 0.97x, MobileNetV2 0.98x at 1 thread)
ACC_BYTES = 32 * 1024  # accumulator buffer of an item at most (more output rows per item read the weights fewer times)
PARALLEL_ITEMS = 8  # work items wanted at least, when an item takes several rows
EDGE_ROWS_WIDTH = 32  # output columns at most for which row blocks tile their edge columns down their rows
MAX_PASS_TAPS = 16  # taps unrolled in one register tile pass at most (more and LLVM hoists loads, then spills)


@dataclass(frozen=True)
class BlockedPlan:
    g: ConvGeometry
    in_block: int  # c_in: 1 for a plain NCHW input
    out_block: int  # c: the vector lanes
    tile: MicroTile  # R columns x G / c vectors
    chunk: int  # input channel blocks per run of register-tile steps
    rows: int  # output rows per item
    last_block_channels: int = 0  # input channels of the last block that are not padding, when some are

    @property
    def padded_tail(self) -> bool:
        """Whether a pointwise tile skips the padded channels of the last input block: a last step of its own
        with fewer taps (all input blocks in one run; MobileNetV2's 24 channels take 2 blocks of 16)."""
        return 0 < self.last_block_channels < self.in_block and self.chunk >= self.in_blocks and \
            not self.channel_steps and not self.row_steps

    @property
    def group_channels(self) -> int:
        return self.tile.columns

    @property
    def in_blocks(self) -> int:
        return self.g.channels // self.in_block

    @property
    def item_dims(self) -> tuple[int, int, int]:
        """(images, groups, row blocks), or (images, row blocks, groups) when the weights are the smaller: then a
        row block's groups follow each other and read its input rows while they are in L2, instead of each
        group streaming the whole input (ResNet-50's 256 -> 64 at 56 x 56: 3.2 MB of input, 64 KB of weights).
        The larger of the two is read once; the smaller is read again, from L2 if it fits."""
        g = self.g
        groups, row_blocks = g.out_channels // self.group_channels, math.ceil(g.out_size[0] / self.rows)
        return (g.batch, row_blocks, groups) if self.groups_inner else (g.batch, groups, row_blocks)

    @property
    def groups_inner(self) -> bool:
        g = self.g
        weights = g.out_channels * g.in_group * math.prod(g.kernel)
        return weights < g.channels * math.prod(g.in_size)

    def item(self, b: ir.IRBuilder, index: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
        """(image, group, row block) of work item `index`."""
        image, outer, inner = unravel(b, index, self.item_dims)
        return (image, inner, outer) if self.groups_inner else (image, outer, inner)

    @property
    def channel_steps(self) -> bool:
        """Whether a tile's steps are the c_in channels of one input block, its unrolled taps the kernel
        columns (a blocked input and a kernel wider than 1: a few taps unrolled, one block per pass), rather
        than the run's blocks with every (kernel column, channel) pair unrolled (1x1 kernels: long passes;
        a plain input: one channel a block)."""
        return self.in_block > 1 and self.g.kernel[1] > 1

    @property
    def row_steps(self) -> bool:
        """Whether a tile's steps are the kernel rows, its unrolled taps every (channel, kernel column): a plain
        input (a stem's few channels), whose tiles then sum a whole window before their accumulators go back
        to memory."""
        return self.in_block == 1

    @property
    def edges_down_rows(self) -> bool:
        """Whether the columns whose taps reach into the padding are tiled down an item's rows (_edge_sweeps),
        not one column a tile along each row: items of several rows over the whole image or a narrow one.
        On wide rows the separate pass cost more than it saved (64 -> 192 channels at 56 x 56: 1.09x)."""
        return self.rows > 1 and (self.rows >= self.g.out_size[0] or self.g.out_size[1] <= EDGE_ROWS_WIDTH)

    def window_rows(self, block: int) -> list[tuple[int, ...]] | None:
        """Per kernel row, the output rows of row block `block` (relative to its first) whose window row lies
        inside the image; None for an interior block, where that is every row of a whole block for every
        kernel row."""
        g, first = self.g, block * self.rows
        rows = range(first, min(first + self.rows, g.out_size[0]))
        per_kernel_row = [tuple(r - first for r in rows
                                if 0 <= r * g.strides[0] + kh * g.dilations[0] - g.pads[0] < g.in_size[0])
                          for kh in range(g.kernel[0])]
        whole = tuple(range(self.rows))
        return None if all(kernel_rows == whole for kernel_rows in per_kernel_row) else per_kernel_row

    @property
    def fresh(self) -> bool:
        """Every item's accumulators are written by exactly one pass of tiles: they need no zeros first, and
        each tile's columns are stored right after it. So it is for a 1x1 kernel reading no padding with all
        its channels in one run, and for a plain input's tiles (row_steps: the whole window in one tile, as
        long as the edge columns are not tiled down the rows kernel row by kernel row)."""
        g = self.g
        pointwise = g.kernel == (1, 1) and not any(g.pads) and \
            all((size - 1) * stride < extent for size, stride, extent in zip(g.out_size, g.strides, g.in_size))
        return self.chunk >= self.in_blocks and (pointwise or self.row_steps and not self.edges_down_rows)


@cache
def blocked_plan(g: ConvGeometry, in_block: int, out_block: int, real_channels: int = 0) -> BlockedPlan:
    """The tile of the fewest modelled cycles over an output row (its vectors dividing the output blocks),
    the input channel blocks per run that keep one kernel row's weights within L1_WEIGHTS_SHARE of L1, and
    the most output rows per item (each reads the weights once) that keep the accumulators within ACC_BYTES
    and leave PARALLEL_ITEMS items. `real_channels`: the input channels before padding to whole blocks."""
    tile = choose_tile(g.dtype, g.out_size[1], g.out_channels, columns_divide=True, aligned=True)
    itemsize = np.dtype(g.dtype).itemsize
    if in_block == 1:  # steps over the kernel rows, every channel in a tile's taps (BlockedPlan.row_steps)
        chunk = g.channels
    elif g.kernel[1] > 1:  # steps over a block's channels (BlockedPlan.channel_steps)
        chunk = 1
    else:
        weights = int(cache_bytes(1) * L1_WEIGHTS_SHARE)
        chunk = max(1, min(g.channels // in_block, weights // (in_block * tile.columns * itemsize)))
    height, row_bytes = g.out_size[0], g.out_size[1] * tile.columns * itemsize
    groups = g.batch * g.out_channels // tile.columns
    rows = max([rows for rows in range(1, height + 1) if rows * row_bytes <= ACC_BYTES
                and groups * math.ceil(height / rows) >= PARALLEL_ITEMS] or [1])
    return BlockedPlan(g, in_block, out_block, tile, chunk, math.ceil(height / math.ceil(height / rows)),
                       real_channels % in_block)


def blocked_geometry(graph: Graph, node: Node) -> tuple[ConvGeometry, int, int]:
    """(geometry, c_in, c) of a BlockedConv node (its weights 6-D, or 4-D for a depthwise conv)."""
    x_type, w_type = graph.input_types(node)[:2]
    n, blocks, oh, ow, out_block = node.outputs[0].shape
    if len(w_type.shape) == 4:  # depthwise: [C / c, KH, KW, c]
        _, kh, kw, in_block = w_type.shape
        channels, group = blocks * out_block, blocks * out_block
    else:
        _, in_blocks, kh, kw, in_block, _ = w_type.shape
        channels, group = in_blocks * in_block, 1
    attrs = node.attrs
    geometry = ConvGeometry(x_type.dtype, n, channels, blocks * out_block, group, tuple(x_type.shape[2:4]),
                            (kh, kw), (oh, ow), tuple(attrs.get("strides", (1, 1))),
                            tuple(attrs.get("dilations", (1, 1))), tuple(attrs.get("pads", (0, 0, 0, 0))[:2]))
    return geometry, in_block, out_block


def node_plan(graph: Graph, node: Node) -> BlockedPlan:
    """The plan of a BlockedConv node, which must be the one block-channels packed its weights for."""
    plan = blocked_plan(*blocked_geometry(graph, node), node.attrs.get("in_channels", 0))
    packed = graph.input_types(node)[1].shape[-1]
    if plan.group_channels != packed:
        raise ValueError(f"node {node.name!r} (kiln::BlockedConv): its weights are packed for groups of {packed} "
                         f"output channels, but this machine's register tile takes {plan.group_channels}; compile the "
                         "model again from its ONNX file on (or for) this machine")
    return plan


class BlockedConvEmitter:
    """Emits one BlockedConv kernel; see the module docstring."""

    def __init__(self, builder: ir.IRBuilder, plan: BlockedPlan, x, w, bias, y, epilogue: Epilogue | None):
        self.b, self.plan, self.g = builder, plan, plan.g
        self.x, self.w, self.bias, self.y, self.epilogue = x, w, bias, y, epilogue
        self.row_size = self.g.out_size[1] * plan.group_channels  # accumulators of an output row
        self.acc = stack_buffer(builder, self.g.dtype, plan.rows * self.row_size)

    def run(self, begin: ir.Value, end: ir.Value) -> None:
        b, g, plan = self.b, self.g, self.plan
        with rolled_range(b, begin, end, name="item") as item:
            image, group, row_block = plan.item(b, item)
            row0 = b.mul(row_block, const_i64(plan.rows))
            rows = smin(b, const_i64(plan.rows), b.sub(const_i64(g.out_size[0]), row0))
            if not plan.fresh:
                zero_fill(b, self.acc, g.dtype, plan.rows * self.row_size)
            with rolled_range(b, 0, plan.in_blocks, plan.chunk, name="c0") as c0:
                steps = const_i64(plan.in_block) if plan.channel_steps else \
                    smin(b, const_i64(plan.chunk), b.sub(const_i64(plan.in_blocks), c0))
                with rolled_range(b, 0, rows, name="row") as row:
                    first_row = b.sub(b.mul(b.add(row0, row), const_i64(g.strides[0])), const_i64(g.pads[0]))
                    acc_row = b.mul(row, const_i64(self.row_size))
                    finish = (lambda column, count, row=row, acc_row=acc_row: self._store(
                        image, group, b.add(row0, row), acc_row, column, count)) if plan.fresh else None
                    low, high = blocked_depthwise.kernel_rows(b, g, first_row)

                    def each_kernel_row(first_row=first_row, acc_row=acc_row, finish=finish, low=low, high=high):
                        with rolled_range(b, low, high, name="kh") as kh:
                            self._sweep_kernel_row(image, group, c0, first_row, kh, steps, acc_row, finish)

                    if plan.row_steps:
                        self._sweep_kernel_row(image, group, c0, first_row, low, b.sub(high, low), acc_row, finish)
                    elif plan.channel_steps and g.kernel[0] > 1:  # inside the image: the whole window at once
                        inside = b.and_(b.icmp_signed("==", low, const_i64(0)),
                                        b.icmp_signed("==", high, const_i64(g.kernel[0])))
                        with b.if_else(inside) as (whole, partial):
                            with whole:
                                self._sweep_kernel_row(image, group, c0, first_row, const_i64(0), steps, acc_row,
                                                       finish, g.kernel[0])
                            with partial:
                                each_kernel_row()
                    else:
                        each_kernel_row()
                if plan.edges_down_rows:
                    self._edge_sweeps(image, group, row_block, c0, steps)
            if not plan.fresh:
                with rolled_range(b, 0, rows, name="out_row") as row:
                    self._store(image, group, b.add(row0, row), b.mul(row, const_i64(self.row_size)),
                                const_i64(0), const_i64(g.out_size[1]))

    def _sweep_kernel_row(self, image, group, c0, first_row, kh, steps, acc_row, finish, kernel_rows: int = 1) -> None:
        """_sweep from kernel row `kh` (and the `kernel_rows` - 1 after it) of the output row whose window starts at
        input row `first_row`."""
        b, g, plan = self.b, self.g, self.plan
        input_row = b.add(first_row, b.mul(kh, const_i64(g.dilations[0])))
        x_row = linear(b, [image, c0, input_row], [plan.in_blocks * math.prod(g.in_size), math.prod(g.in_size),
                                                   g.in_size[1]])
        w_row = linear(b, [group, c0, kh], [plan.in_blocks * math.prod(g.kernel), math.prod(g.kernel), g.kernel[1]])
        self._sweep(b.mul(x_row, const_i64(plan.in_block)),
                    b.mul(w_row, const_i64(plan.in_block * plan.group_channels)), steps, acc_row, finish, kernel_rows)

    def _sweep(self, x_row: ir.Value, w_row: ir.Value, steps: ir.Value, acc_row: ir.Value, finish=None,
               kernel_rows: int = 1) -> None:
        """acc[column, :] += the run's blocks' taps on this kernel row, tile by tile along the output row; with
        `finish`, each tile's columns are stored right after it (finish(first column, count)), while they are
        in L1 and their stores overlap the next tile's multiplies."""
        b, g, plan = self.b, self.g, self.plan
        channels, column_step = plan.group_channels, g.strides[1] * plan.in_block
        for run in column_runs(g):
            if plan.edges_down_rows and not run.full(g):
                continue  # (_edge_sweeps)
            full, rest = divmod(run.count, plan.tile.rows)
            tiles = [(const_i64(run.first + full * plan.tile.rows), rest)] if rest else []
            if full == 1:
                tiles.append((const_i64(run.first), plan.tile.rows))
            for column, rows in tiles:
                self._tile(b.add(x_row, b.mul(column, const_i64(column_step))), column_step, w_row, steps,
                           b.add(acc_row, b.mul(column, const_i64(channels))), channels, rows, run.kernel_columns,
                           kernel_rows)
                if finish:
                    finish(column, const_i64(rows))
            if full > 1:
                with rolled_range(b, 0, full, name="tile") as tile:
                    column = b.add(const_i64(run.first), b.mul(tile, const_i64(plan.tile.rows)))
                    self._tile(b.add(x_row, b.mul(column, const_i64(column_step))), column_step, w_row, steps,
                               b.add(acc_row, b.mul(column, const_i64(channels))), channels, plan.tile.rows,
                               run.kernel_columns, kernel_rows)
                    if finish:
                        finish(column, const_i64(plan.tile.rows))

    def _edge_sweeps(self, image: ir.Value, group: ir.Value, row_block: ir.Value, c0: ir.Value,
                     steps: ir.Value) -> None:
        """An item of several rows tiles each column whose taps reach into the padding down its rows instead,
        per kernel row over the rows whose window row lies inside the image, so it runs no one-column tiles
        (a 14 x 14 output: 2 of 14 columns). Those rows are static: row blocks at the image's top and bottom
        get code of their own (BlockedPlan.window_rows); the interior ones share code in which every row reads
        every kernel row."""
        b, plan = self.b, self.plan
        blocks = math.ceil(self.g.out_size[0] / plan.rows)
        edges = [(block, rows) for block in range(blocks) if (rows := plan.window_rows(block)) is not None]
        interior = len(edges) < blocks

        def sweep(cases: list) -> None:
            if not cases:
                if interior:
                    kernel_rows = [(0, const_i64(self.g.kernel[0]), tuple(range(plan.rows)))] if plan.row_steps else \
                        [(kh, steps, tuple(range(plan.rows))) for kh in range(self.g.kernel[0])]
                    self._edge_sweep(image, group, c0, b.mul(row_block, const_i64(plan.rows)), kernel_rows)
                return
            (block, rows), rest = cases[0], cases[1:]
            kernel_rows = [(kh, const_i64(1) if plan.row_steps else steps, rows[kh]) for kh in range(self.g.kernel[0])]

            def edge_block() -> None:
                self._edge_sweep(image, group, c0, const_i64(block * plan.rows), kernel_rows)

            if not rest and not interior:  # the last case left: no test needed
                edge_block()
                return
            with b.if_else(b.icmp_signed("==", row_block, const_i64(block))) as (then, otherwise):
                with then:
                    edge_block()
                with otherwise:
                    sweep(rest)

        sweep(edges)

    def _edge_sweep(self, image: ir.Value, group: ir.Value, c0: ir.Value, row0: ir.Value, kernel_rows: list) -> None:
        """The edge columns' tiles for the output rows from row0 on: for each (first kernel row, steps, rows
        relative to row0) in `kernel_rows`, tiles of consecutive rows starting at that kernel row."""
        b, g, plan = self.b, self.g, self.plan
        channels, block, width = plan.group_channels, plan.in_block, g.in_size[1]
        row_step = g.strides[0] * width * block  # between output rows' inputs
        plane = linear(b, [image, c0], [plan.in_blocks * math.prod(g.in_size), math.prod(g.in_size)])
        for run in (run for run in column_runs(g) if not run.full(g)):
            for column in range(run.first, run.first + run.count):
                for kh, steps, rows in kernel_rows:
                    shift = kh * g.dilations[0] - g.pads[0]
                    w_row = linear(b, [group, c0], [plan.in_blocks * math.prod(g.kernel), math.prod(g.kernel)],
                                   const_i64(kh * g.kernel[1]))
                    for first in range(rows[0] if rows else 0, rows[-1] + 1 if rows else 0, plan.tile.rows):
                        count = min(plan.tile.rows, rows[-1] + 1 - first)
                        start = b.add(b.mul(b.add(row0, const_i64(first)), const_i64(g.strides[0] * width)),
                                      const_i64(shift * width + column * g.strides[1]))
                        self._tile(b.mul(b.add(plane, start), const_i64(block)), row_step,
                                   b.mul(w_row, const_i64(block * channels)), steps,
                                   const_i64((first * g.out_size[1] + column) * channels),
                                   g.out_size[1] * channels, count, run.kernel_columns)

    def _tile(self, x_start, x_step: int, w_row, steps, acc_start, acc_step: int, rows: int,
              kernel_columns: tuple[int, ...], kernel_rows: int = 1) -> None:
        """Register tiles of `rows` outputs, the r-th reading its input from x_start + r * x_step and summing
        into acc at acc_start + r * acc_step, one pass per MAX_PASS_TAPS taps; with channel steps, the taps of
        `kernel_rows` kernel rows at once. A padded last input block takes a step of its own with the taps of its
        real channels only (BlockedPlan.padded_tail)."""
        b, g, plan = self.b, self.g, self.plan
        dtype, block, channels = element_type(g.dtype), plan.in_block, plan.group_channels
        tile = MicroTile(rows, plan.tile.vectors, plan.tile.lanes, aligned=True)
        a_rows = [b.gep(self.x, [b.add(x_start, const_i64(r * x_step))], source_etype=dtype) for r in range(rows)]
        shift = [(k * g.dilations[1] - g.pads[1]) * block for k in range(g.kernel[1])]  # a kernel column's input
        if plan.row_steps:  # taps (channel, kernel column) of one kernel row; steps the kernel rows
            taps = [(c * math.prod(g.in_size) + shift[k], (c * math.prod(g.kernel) + k) * channels)
                    for c in range(plan.in_blocks) for k in kernel_columns]
            a_step, b_step = g.dilations[0] * g.in_size[1], g.kernel[1] * channels
        elif plan.channel_steps:  # taps the kernel columns (of kernel_rows rows); steps a block's channels
            row_shift = g.dilations[0] * g.in_size[1] * block
            taps = [(r * row_shift + shift[k], (r * g.kernel[1] + k) * block * channels)
                    for r in range(kernel_rows) for k in kernel_columns]
            a_step, b_step = 1, channels
        else:  # taps (kernel column, channel of the block); steps the run's blocks
            def block_taps(count: int) -> list:
                return [(shift[k] + ci, (k * block + ci) * channels) for k in kernel_columns for ci in range(count)]

            taps = block_taps(block)
            a_step, b_step = math.prod(g.in_size) * block, math.prod(g.kernel) * block * channels
        segments = [(steps, 0, taps)]  # (steps, first step, taps)
        if plan.padded_tail:  # the last block's real channels only
            last = plan.in_blocks - 1
            segments = [(const_i64(last), 0, taps), (const_i64(1), last, block_taps(plan.last_block_channels))]
        first_pass = True
        for segment_steps, first_step, segment_taps in segments:
            passes = math.ceil(len(segment_taps) / MAX_PASS_TAPS)
            rows_at = [b.gep(row, [const_i64(first_step * a_step)], source_etype=dtype) for row in a_rows]
            w_at = b.gep(self.w, [b.add(w_row, const_i64(first_step * b_step))], source_etype=dtype)
            for index in range(passes):
                used = segment_taps[index * len(segment_taps) // passes:(index + 1) * len(segment_taps) // passes]
                a = Operand(a_step, tuple(a_tap for a_tap, _ in used))
                weights = Operand(b_step, tuple(b_tap for _, b_tap in used))
                emit_register_tile(b, tile, g.dtype, segment_steps, rows_at, a, w_at, weights, self.acc, acc_start,
                                   acc_step, fresh=plan.fresh and first_pass)
                first_pass = False

    def _store(self, image: ir.Value, group: ir.Value, row: ir.Value, acc_row: ir.Value, first: ir.Value,
               count: ir.Value) -> None:
        """y[image, block, row, column, :] = epilogue(acc[column, block's lanes] + bias) for the group's blocks and
        the columns [first, first + count)."""
        b, g, plan = self.b, self.g, self.plan
        lanes, width = plan.out_block, g.out_size[1]
        blocks = g.out_channels // lanes
        for vector in range(plan.tile.vectors):
            out_block = b.add(b.mul(group, const_i64(plan.tile.vectors)), const_i64(vector))
            out_row = linear(b, [image, out_block, row], [blocks * math.prod(g.out_size) * lanes,
                                                         math.prod(g.out_size) * lanes, width * lanes])
            with rolled_range(b, first, b.add(first, count), name="out_column") as column:
                with rolled_range(b, 0, lanes, name="lane") as lane:
                    value = load(b, self.acc, g.dtype, linear(b, [column, lane], [plan.group_channels, 1],
                                                              b.add(acc_row, const_i64(vector * lanes))))
                    if self.bias is not None:
                        value = b.fadd(value, load(b, self.bias, g.dtype,
                                                   linear(b, [out_block, lane], [lanes, 1])))
                    at = linear(b, [column, lane], [lanes, 1])
                    if self.epilogue is not None:
                        value = self.epilogue(b, value, out_row, at)
                    store(b, value, self.y, g.dtype, b.add(out_row, at))


def _depthwise(graph: Graph, node: Node) -> bool:
    return len(graph.input_types(node)[1].shape) == 4


def _work_items(graph: Graph, node: Node) -> int:
    if _depthwise(graph, node):
        geometry, _, lanes = blocked_geometry(graph, node)
        return blocked_depthwise.work_items(geometry, lanes)
    return math.prod(node_plan(graph, node).item_dims)


def _batch_items(graph: Graph, node: Node, bound: int) -> BatchItems | None:
    return batch_major(_work_items(graph, node), bound)


def _emit(ctx: KernelContext) -> None:
    x, w, bias, *extras = ctx.inputs
    epilogue = FusedEpilogue(ctx.node, ctx.outputs[0], extras, 2) if ctx.node.attrs.get("epilogue") else None
    bias = None if bias is None else bias.ptr
    if _depthwise(ctx.graph, ctx.node):
        geometry, _, lanes = blocked_geometry(ctx.graph, ctx.node)
        blocked_depthwise.emit(ctx.builder, geometry, lanes, x.ptr, w.ptr, bias, ctx.outputs[0].ptr, epilogue,
                               ctx.begin, ctx.end)
        return
    BlockedConvEmitter(ctx.builder, node_plan(ctx.graph, ctx.node), x.ptr, w.ptr, bias, ctx.outputs[0].ptr,
                       epilogue).run(ctx.begin, ctx.end)


register_kernel(KernelSpec((f"{KILN_DOMAIN}::BlockedConv",), conv_check, _work_items, _emit, batch_items=_batch_items))
