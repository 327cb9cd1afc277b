"""MatMul and Gemm through one cache-blocked GEMM over register tiles (pointwise Conv reuses it).

A work item is (batch, block of output rows, block of output columns): it owns whole output
elements, so a reduction over K never crosses threads and results are the same for any thread
count. For each block of K the item packs its rows of A (by group of tile rows, `lanes` k at a
time, so a tile reads its next scalars from one contiguous run) and its columns of B (micro-
panels: tile-wide column strips, contiguous over k, sized to stay in L1, zero past the last
column and the depth), then runs the register tile (gemm_microkernel.py) over every (column
strip, row group), summing into a stack tile of the item's outputs. A's rows are read in place
instead when they are contiguous over k in whole vectors, and a constant B comes as such panels
already (laid out at compile time by pack-gemm-weights: GemmProblem.packed_b). Rows past the last repeat
the last row of A and are dropped. A last pass applies alpha, beta * C and the caller's epilogue
(fused bias, activation, residual) to each output before it is stored. Blocking comes from a
small cycle model of tiles, packing and the store pass, over 1, 2 and 4 threads.

A transposed B with few rows of A (a fully connected layer at batch 1) is instead a set of dot
products along k (GemmProblem.dot_form), which reads each weight once as part of a vector.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from typing import Callable, Sequence

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I1, I8, I64, PTR, const_i64, element_type, for_range, load, store
from compiler.codegen.llvm.kernels.gemm_microkernel import (MicroTile, Operand, cache_bytes, carried_loop,
                                                            choose_tile, disable_unrolling, emit_register_tile, fma,
                                                            load_vector, masked_gather, masked_load, reduce_sum,
                                                            round_up, split_cycles, store_vector, vector_lanes)
from compiler.codegen.llvm.kernels.lookup_tables import Table
from compiler.codegen.llvm.kernels.math_functions import intrinsic
from compiler.codegen.llvm.kernels.registry import (BATCH_ROWS, EXTENT_COLUMNS, EXTENT_DEPTH, EXTENT_ROWS, BatchItems,
                                                     KernelContext, KernelSpec, batch_major, register_kernel)
from compiler.ir.graph import Graph, Node
from compiler.ops.fused_linear import weights_shape

FLOATS = ("float32", "float64")
ROW_BLOCK, COLUMN_BLOCK = 96, 256  # output rows and columns per work item at most
PACK_CYCLES, GATHER_CYCLES, STORE_CYCLES = 0.3, 2.0, 0.3  # per packed, gathered and stored element
STREAM_CYCLES = 0.1  # per element of an operand an item reads in place (A's rows, packed B) into its caches
DOT_ROWS = 4  # A rows up to which a GEMM with a transposed B is computed as dot products
DOT_COLUMNS = 8  # outputs (independent vector accumulators) per dot-product pass
PANEL_SHARE = 0.75  # of L1 for one packed micro-panel (the rest holds A rows and the accumulators)

Epilogue = Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value], ir.Value]
"""(builder, value, linear index of the output row's first element, column) -> the value to store."""


# ---- index helpers shared with the convolution kernels ----

def unravel(builder: ir.IRBuilder, index: ir.Value, dims: Sequence[int]) -> list[ir.Value]:
    """Row-major coordinates of a flat i64 `index` over static `dims`."""
    coords = []
    for position, dim in enumerate(reversed(dims)):
        if dim == 1:
            coords.append(const_i64(0))
        elif position == len(dims) - 1:
            coords.append(index)
        else:
            coords.append(builder.urem(index, const_i64(dim)))
            index = builder.udiv(index, const_i64(dim))
    return coords[::-1]


def linear(builder: ir.IRBuilder, coords: Sequence[ir.Value], strides: Sequence[int], base=None) -> ir.Value:
    """base + sum(coord * stride), skipping zero strides."""
    total = base if base is not None else const_i64(0)
    for coord, stride in zip(coords, strides):
        if stride:
            total = builder.add(total, coord if stride == 1 else builder.mul(coord, const_i64(stride)))
    return total


def smin(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed("<", a, b), a, b)


def smax(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed(">", a, b), a, b)


def stack_buffer(builder: ir.IRBuilder, dtype: str, count: int) -> ir.Value:
    """A 64-byte aligned scratch array; call before any loop so it sits in the entry block."""
    buffer = builder.alloca(element_type(dtype), size=const_i64(count))
    buffer.align = 64
    return buffer


def zero_fill(builder: ir.IRBuilder, buffer: ir.Value, dtype: str, count: int) -> None:
    memset = builder.module.declare_intrinsic("llvm.memset", [PTR, I64])
    size = count * np.dtype(dtype).itemsize
    builder.call(memset, [buffer, ir.Constant(I8, 0), const_i64(size), ir.Constant(I1, 0)])


@contextmanager
def rolled_range(builder: ir.IRBuilder, start, stop, step: int = 1, name: str = "i"):
    """for_range whose loop LLVM may vectorize but not unroll.

    Unrolling these loop nests buys nothing (the vectorizer interleaves the inner loops) and costs
    seconds of compile time; fully unrolling a short static loop also turns every stack-tile index
    into a constant, and SROA then splits the tile into registers that spill everywhere.
    """
    with for_range(builder, start, stop, step, name) as index:
        yield index
    disable_unrolling(builder, index.incomings[-1][1].terminator)


def multiply_add(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, acc: ir.Value) -> ir.Value:
    """a * b + acc, fused where the target has FMA (same choice in vector and scalar code)."""
    return intrinsic(builder, "fmuladd", a, b, acc)


# ---- the GEMM loop nest ----

@dataclass(frozen=True)
class Layout:
    """Element (batch coords, row, col) of an operand sits at sum(coord * batch) + row * row + col * col."""

    batch: tuple[int, ...]
    row: int
    col: int


@dataclass(frozen=True)
class GemmProblem:
    """out[b, i, j] = alpha * sum_k a[b, i, k] * b[b, k, j] + beta * c[b, i, j] with static sizes."""

    dtype: str
    batch: tuple[int, ...]
    m: int
    n: int
    k: int
    a: Layout
    b: Layout
    out: Layout
    c: Layout | None = None
    alpha: float = 1.0
    beta: float = 1.0
    b_columns: tuple[int, ...] | None = None  # where each column of B starts (elements), instead of b.col
    row_period: int = 0  # rows of one entry of a dynamic batch (dynamic_batch.BATCH_ROWS): row blocks divide it
    extent_n: bool = False  # n (extent_k: k) runs over a dynamic extent: stop at its run-time size
    extent_k: bool = False
    extent_rows: tuple[int, int] | None = None  # rows run over it: (rows of a period, rows per position)
    packed_b: int = 0  # B comes packed at compile time in panels this many columns wide (fused_linear.packed_weights)
    packed_depth: int = 0  # and this many rows (k rounded up to whole vectors)

    @property
    def dot_form(self) -> bool:
        """Few rows of A and a transposed B (contiguous over k, as fully connected layers store it): each
        output is a dot product along k, and each element of B is read once, in a whole vector."""
        return self.m <= DOT_ROWS and self.b.row == 1 and self.b.col != 1 and self.a.col == 1 and \
            self.b_columns is None

    @property
    def a_in_place(self) -> bool:
        """A's rows run contiguously over k in whole vectors: register tiles read them where they are, with
        no packed copy (a tile's rows past the last repeat the last row, as packed ones do)."""
        return self.a.col == 1 and self.k % vector_lanes(self.dtype) == 0 and not self.extent_k

    @property
    def work_items(self) -> int:
        if self.dot_form:
            return math.prod(self.batch) * self.m * math.ceil(self.n / DOT_COLUMNS)
        plan = gemm_plan(self)
        return math.prod(self.batch) * math.ceil(self.m / plan.rows) * math.ceil(self.n / plan.columns)


@dataclass(frozen=True)
class GemmPlan:
    """The register tile and the blocking: rows and columns per work item, depth of a packed panel; the
    modelled cycles."""

    tile: MicroTile
    rows: int
    columns: int
    depth: int
    cycles: float


@cache
def gemm_plan(p: GemmProblem) -> GemmPlan:
    """The tile for the problem's shape; the depth whose B micro-panel fills PANEL_SHARE of L1; and the
    (rows, columns) per item of the fewest modelled cycles: register tiles, packing (each item packs its
    rows of A and its columns of B, gathered ones cost more, ones read in place less) and the store pass,
    over threads."""
    tile = choose_tile(p.dtype, p.m, p.n, tile_columns=p.packed_b)
    panel_depth = int(cache_bytes(1) * PANEL_SHARE) // (tile.columns * np.dtype(p.dtype).itemsize)
    depth = min(round_up(p.k, tile.lanes), max(1, panel_depth // tile.lanes) * tile.lanes)
    a_cost = STREAM_CYCLES if p.a_in_place else PACK_CYCLES
    b_cost = STREAM_CYCLES if p.packed_b else PACK_CYCLES if p.b.col == 1 and p.b_columns is None else GATHER_CYCLES
    steps = round_up(p.k, tile.lanes)

    def item(rows: int, columns: int) -> float:
        tiles = math.ceil(rows / tile.rows) * math.ceil(columns / tile.columns)
        return (tiles * steps * tile.step_cycles() + round_up(rows, tile.rows) * steps * a_cost
                + steps * round_up(columns, tile.columns) * b_cost + rows * columns * STORE_CYCLES)

    def cycles(option: tuple[int, int]) -> float:
        rows, columns = option
        costs = [item(min(rows, p.m - i), min(columns, p.n - j)) for i in range(0, p.m, rows)
                 for j in range(0, p.n, columns)]
        return split_cycles(costs * math.prod(p.batch))

    row_options = range(tile.rows, min(round_up(p.m, tile.rows), ROW_BLOCK) + 1, tile.rows)
    row_options = [rows for rows in row_options if p.row_period % rows == 0] or row_options  # no rows wasted
    widest = min(round_up(p.n, tile.columns), COLUMN_BLOCK)
    if p.extent_rows:  # a short extent leaves one row block: two column blocks at least keep two threads busy
        widest = min(widest, max(tile.columns, round_up(-(-p.n // 2), tile.columns)))
    options = [(rows, columns) for rows in row_options  # at a batch below the bound
               for columns in range(tile.columns, widest + 1, tile.columns)]
    rows, columns = min(options, key=cycles)
    return GemmPlan(tile, rows, columns, depth, cycles((rows, columns)))


def copy_run(builder: ir.IRBuilder, dtype: str, lanes: int, source_ptr, source: ir.Value, stride: int,
             count: ir.Value, width: int, target_ptr, target: ir.Value) -> None:
    """target[0:width] = the first `count` (runtime; <= 0 or past width allowed) elements from
    source (step `stride`), zeros after them. `target` must be vector aligned with round_up(width,
    lanes) elements of room."""
    b = builder
    for start in range(0, width, lanes):
        value = masked_load(b, source_ptr, dtype, linear(b, [const_i64(start)], [stride], source), lanes,
                            b.sub(count, const_i64(start)), stride)
        store_vector(b, value, target_ptr, dtype, b.add(target, const_i64(start)), aligned=True)


def pack_rows(builder: ir.IRBuilder, tile: MicroTile, dtype: str, source_ptr, base: ir.Value,
              strides: tuple[int, int], rows: ir.Value, chunks: ir.Value, width: int, count: ir.Value,
              panel, group_stride: int) -> None:
    """The A operand of register tiles: panel[group][chunk][row][:width] = source[row, chunk * width
    + e] (row and element strides `strides`) for the first `count` elements of each row, zeros after.
    A tile then reads the `width` scalars of its rows for one step from one contiguous run (rows padded
    to round_up(width, lanes)). Rows up to a whole number of groups repeat the last row."""
    b = builder
    padded_width = round_up(width, tile.lanes)
    padded = b.mul(b.udiv(b.add(rows, const_i64(tile.rows - 1)), const_i64(tile.rows)), const_i64(tile.rows))
    with rolled_range(b, 0, padded, name="pa") as r:
        source = linear(b, [smin(b, r, b.sub(rows, const_i64(1)))], [strides[0]], base)
        group, row = b.udiv(r, const_i64(tile.rows)), b.urem(r, const_i64(tile.rows))
        target = linear(b, [group, row], [group_stride, padded_width])
        with rolled_range(b, 0, chunks, name="pak") as chunk:
            start = b.mul(chunk, const_i64(width))
            copy_run(b, dtype, tile.lanes, source_ptr, linear(b, [start], [strides[1]], source), strides[1],
                     b.sub(count, start), width, panel, linear(b, [chunk], [tile.rows * padded_width], target))


class _GemmEmitter:
    """The blocked form; see the module docstring."""

    def __init__(self, builder: ir.IRBuilder, problem: GemmProblem, a_ptr, b_ptr, out_ptr, c_ptr,
                 epilogue: Epilogue | None):
        self.builder, self.p, self.plan = builder, problem, gemm_plan(problem)
        self.a_ptr, self.b_ptr, self.out_ptr, self.c_ptr, self.epilogue = a_ptr, b_ptr, out_ptr, c_ptr, epilogue
        plan = self.plan
        self.acc = stack_buffer(builder, problem.dtype, plan.rows * plan.columns)
        self.a_panel = None if problem.a_in_place else stack_buffer(builder, problem.dtype, plan.rows * plan.depth)
        self.b_panel = None if problem.packed_b else stack_buffer(builder, problem.dtype, plan.depth * plan.columns)
        self.b_columns = None if problem.b_columns is None else \
            Table(builder.module, np.array(problem.b_columns, dtype=np.int32), "gemm_columns")
        self.single_block = problem.k <= plan.depth  # tiles then write their sums: acc needs no zeros first

    def run(self, begin: ir.Value, end: ir.Value, extent: ir.Value | None = None) -> None:
        """Items [begin, end); `extent` is the run-time size that n and k stop at where the problem says so."""
        b, p, plan = self.builder, self.p, self.plan
        lanes = plan.tile.lanes
        n = extent if p.extent_n and extent is not None else const_i64(p.n)
        k = extent if p.extent_k and extent is not None else const_i64(p.k)
        with rolled_range(b, begin, end, name="item") as item:
            blocks = (math.ceil(p.m / plan.rows), math.ceil(p.n / plan.columns))
            *batch, row_block, col_block = unravel(b, item, p.batch + blocks)
            i0, j0 = b.mul(row_block, const_i64(plan.rows)), b.mul(col_block, const_i64(plan.columns))
            rows = smin(b, const_i64(plan.rows), b.sub(const_i64(p.m), i0))
            if p.extent_rows and extent is not None:  # the rows of positions below the extent, one at least
                period, per_position = map(const_i64, p.extent_rows)
                valid = b.sub(b.add(b.mul(b.udiv(i0, period), period), b.mul(extent, per_position)), i0)
                rows = smin(b, rows, b.select(b.icmp_signed("<", valid, const_i64(1)), const_i64(1), valid))
            cols = smin(b, const_i64(plan.columns), b.sub(n, j0))
            a_base = linear(b, batch + [i0], p.a.batch + (p.a.row,))
            b_base = linear(b, batch + [j0], p.b.batch + (0 if p.b_columns else p.b.col,))
            if not self.single_block:
                zero_fill(b, self.acc, p.dtype, plan.rows * plan.columns)
            with rolled_range(b, 0, k, plan.depth, name="k0") as k0:
                depth = smin(b, const_i64(plan.depth), b.sub(k, k0))
                chunks = b.udiv(b.add(depth, const_i64(lanes - 1)), const_i64(lanes))
                a_start = linear(b, [k0], [p.a.col], a_base)
                if not p.a_in_place:
                    self._pack_a(a_start, depth, chunks, rows)
                if p.packed_b:  # the packed panels: columns j0 + q0.. from row k0
                    panels = (self.b_ptr, linear(b, [j0, k0], [p.packed_depth, p.packed_b]), p.packed_depth)
                else:
                    self._pack_b(linear(b, [k0], [p.b.row], b_base), j0, depth, chunks, cols)
                    panels = (self.b_panel, const_i64(0), plan.depth)
                self._multiply(chunks, rows, cols, a_start, *panels)
            self._store(batch, i0, j0, rows, cols)

    def _pack_a(self, base: ir.Value, depth: ir.Value, chunks: ir.Value, rows: ir.Value) -> None:
        p, tile = self.p, self.plan.tile
        pack_rows(self.builder, tile, p.dtype, self.a_ptr, base, (p.a.row, p.a.col), rows, chunks,
                  tile.lanes, depth, self.a_panel, tile.rows * self.plan.depth)

    def _pack_b(self, base: ir.Value, j0: ir.Value, depth: ir.Value, chunks: ir.Value, cols: ir.Value) -> None:
        """B[k block, j0:j0+cols] as micro-panels: strip s holds columns s*NR.. as rows of NR over k;
        zero past the last column and the depth. Rows of B are read in order (strips inner)."""
        b, p, tile = self.builder, self.p, self.plan.tile
        width = tile.columns
        with rolled_range(b, 0, b.mul(chunks, const_i64(tile.lanes)), name="pk") as k:
            row = linear(b, [k], [p.b.row], base)
            inside = b.icmp_signed("<", k, depth)
            with rolled_range(b, 0, cols, width, name="strip") as q0:
                used = b.select(inside, b.sub(cols, q0), const_i64(0))
                target = linear(b, [q0, k], [self.plan.depth, width])
                if self.b_columns is None:  # evenly spaced columns
                    copy_run(b, p.dtype, tile.lanes, self.b_ptr, linear(b, [q0], [p.b.col], row), p.b.col, used,
                             width, self.b_panel, target)
                else:
                    self._gather_columns(row, b.add(j0, q0), used, target)

    def _gather_columns(self, row: ir.Value, column: ir.Value, used: ir.Value, target: ir.Value) -> None:
        """One micro-panel row from columns of B at tabled offsets (strided pointwise convs)."""
        b, p, tile = self.builder, self.p, self.plan.tile
        for start in range(0, tile.columns, tile.lanes):
            count = b.sub(used, const_i64(start))
            offsets = masked_load(b, self.b_columns.global_, "int32", b.add(column, const_i64(start)), tile.lanes,
                                  count)
            value = masked_gather(b, self.b_ptr, p.dtype, row, offsets, tile.lanes, count)
            store_vector(b, value, self.b_panel, p.dtype, b.add(target, const_i64(start)), aligned=True)

    def _multiply(self, chunks: ir.Value, rows: ir.Value, cols: ir.Value, a_start: ir.Value, panels,
                  start: ir.Value, depth: int) -> None:
        """acc += A @ B panels, one register tile per (column strip, row group), `lanes` k per step: A's
        rows from its panel, or in place from element a_start on; the B panel of the strip at column q0 from
        element start + q0 * depth of `panels`."""
        b, p, tile = self.builder, self.p, self.plan.tile
        dtype = element_type(p.dtype)
        a_operand = Operand(tile.lanes if p.a_in_place else tile.rows * tile.lanes, tuple(range(tile.lanes)))
        b_operand = Operand(tile.lanes * tile.columns, tuple(u * tile.columns for u in range(tile.lanes)))
        with rolled_range(b, 0, cols, tile.columns, name="q0") as q0:
            panel = b.gep(panels, [b.add(start, b.mul(q0, const_i64(depth)))], source_etype=dtype)
            with rolled_range(b, 0, rows, tile.rows, name="r0") as r0:
                if p.a_in_place:
                    last = b.sub(rows, const_i64(1))
                    a_rows = [b.gep(self.a_ptr, [linear(b, [smin(b, b.add(r0, const_i64(r)), last)], [p.a.row],
                                                        a_start)], source_etype=dtype) for r in range(tile.rows)]
                else:
                    group = b.gep(self.a_panel, [b.mul(r0, const_i64(self.plan.depth))], source_etype=dtype)
                    a_rows = [b.gep(group, [const_i64(r * tile.lanes)], source_etype=dtype) for r in range(tile.rows)]
                emit_register_tile(b, tile, p.dtype, chunks, a_rows, a_operand, panel, b_operand, self.acc,
                                   b.add(b.mul(r0, const_i64(self.plan.columns)), q0), self.plan.columns,
                                   fresh=self.single_block)

    def _store(self, batch, i0, j0, rows, cols) -> None:
        b = self.builder
        with rolled_range(b, 0, rows, name="sr") as r:
            with rolled_range(b, 0, cols, name="sj") as j:
                value = load(b, self.acc, self.p.dtype, b.add(b.mul(r, const_i64(self.plan.columns)), j))
                _finish(b, self.p, value, batch, b.add(i0, r), b.add(j0, j), self.c_ptr, self.out_ptr, self.epilogue)


def _finish(builder: ir.IRBuilder, p: GemmProblem, value: ir.Value, batch, row: ir.Value, column: ir.Value,
            c_ptr, out_ptr, epilogue: Epilogue | None) -> None:
    """out[batch, row, column] = epilogue(alpha * value + beta * c[batch, row, column])."""
    b, value_type = builder, element_type(p.dtype)
    if p.alpha != 1:
        value = b.fmul(value, ir.Constant(value_type, p.alpha))
    if p.c is not None:
        c_value = load(b, c_ptr, p.dtype, linear(b, batch + [row, column], p.c.batch + (p.c.row, p.c.col)))
        value = b.fadd(value, b.fmul(c_value, ir.Constant(value_type, p.beta)))
    out_row = linear(b, batch + [row], p.out.batch + (p.out.row,))
    if epilogue is not None:
        value = epilogue(b, value, out_row, column)
    store(b, value, out_ptr, p.dtype, linear(b, [column], [p.out.col], out_row))


class _DotEmitter:
    """The dot form (GemmProblem.dot_form): a work item is (batch, row, block of DOT_COLUMNS columns);
    vector accumulators run along k (the tail masked) and each is summed by a fixed tree."""

    def __init__(self, builder: ir.IRBuilder, problem: GemmProblem, a_ptr, b_ptr, out_ptr, c_ptr,
                 epilogue: Epilogue | None):
        self.builder, self.p, self.lanes = builder, problem, vector_lanes(problem.dtype)
        self.a_ptr, self.b_ptr, self.out_ptr, self.c_ptr, self.epilogue = a_ptr, b_ptr, out_ptr, c_ptr, epilogue

    def run(self, begin: ir.Value, end: ir.Value) -> None:
        b, p, lanes = self.builder, self.p, self.lanes
        with rolled_range(b, begin, end, name="item") as item:
            *batch, row, block = unravel(b, item, p.batch + (p.m, math.ceil(p.n / DOT_COLUMNS)))
            j0 = b.mul(block, const_i64(DOT_COLUMNS))
            a_row = linear(b, batch + [row], p.a.batch + (p.a.row,))
            columns = [smin(b, b.add(j0, const_i64(j)), const_i64(p.n - 1)) for j in range(DOT_COLUMNS)]
            b_rows = [linear(b, batch + [column], p.b.batch + (p.b.col,)) for column in columns]
            vector_type = ir.VectorType(element_type(p.dtype), lanes)

            def step(t, sums, count=None):
                k = b.mul(t, const_i64(lanes))
                if count is None:
                    a = load_vector(b, self.a_ptr, p.dtype, b.add(a_row, k), lanes)
                    loads = [load_vector(b, self.b_ptr, p.dtype, b.add(start, k), lanes) for start in b_rows]
                else:
                    a = masked_load(b, self.a_ptr, p.dtype, b.add(a_row, k), lanes, count)
                    loads = [masked_load(b, self.b_ptr, p.dtype, b.add(start, k), lanes, count) for start in b_rows]
                return [fma(b, a, value, total) for value, total in zip(loads, sums)]

            sums = carried_loop(b, const_i64(p.k // lanes), [ir.Constant(vector_type, None)] * DOT_COLUMNS, step)
            if p.k % lanes:
                sums = step(const_i64(p.k // lanes), sums, const_i64(p.k % lanes))
            for j, total in enumerate(sums):
                column = b.add(j0, const_i64(j))
                with b.if_then(b.icmp_signed("<", column, const_i64(p.n))):
                    _finish(b, p, reduce_sum(b, total), batch, row, column, self.c_ptr, self.out_ptr, self.epilogue)


def emit_gemm(builder: ir.IRBuilder, begin: ir.Value, end: ir.Value, problem: GemmProblem,
              a_ptr: ir.Value, b_ptr: ir.Value, out_ptr: ir.Value, c_ptr: ir.Value | None = None,
              epilogue: Epilogue | None = None, extent: ir.Value | None = None) -> None:
    """Compute work items [begin, end) of `problem` (see GemmProblem.work_items); `epilogue` maps
    each finished output before it is stored (the output must be row-major: out.col == 1). The blocked
    form stops n or k at `extent` where the problem runs them over a dynamic extent; the dot form (a few
    rows) computes them whole, reading the extent's padding, which is masked where it is summed."""
    if problem.dot_form:
        _DotEmitter(builder, problem, a_ptr, b_ptr, out_ptr, c_ptr, epilogue).run(begin, end)
    else:
        _GemmEmitter(builder, problem, a_ptr, b_ptr, out_ptr, c_ptr, epilogue).run(begin, end, extent)


# ---- MatMul and Gemm nodes ----

def _batch_strides(dims: Sequence[int], matrix_size: int) -> tuple[int, ...]:
    """Row-major strides of stacked matrices, 0 along broadcast (size-1) dims."""
    strides, step = [], matrix_size
    for dim in reversed(dims):
        strides.append(step if dim != 1 else 0)
        step *= dim
    return tuple(reversed(strides))


def _matmul_problem(graph: Graph, node: Node) -> GemmProblem:
    a_type, b_type = graph.input_types(node)[:2]
    problem = matmul_problem(a_type.dtype, a_type.shape, weights_shape(node, b_type.shape))
    return replace(problem, **_node_fields(node), **_packed_fields(node, problem, b_type.shape))


def _node_fields(node: Node) -> dict:
    """The GemmProblem fields a dynamic batch or extent sets through node attributes (registry.BATCH_ROWS, ...)."""
    rows = node.attrs.get(EXTENT_ROWS)
    return {"row_period": node.attrs.get(BATCH_ROWS, 0), "extent_n": bool(node.attrs.get(EXTENT_COLUMNS)),
            "extent_k": bool(node.attrs.get(EXTENT_DEPTH)), "extent_rows": tuple(rows) if rows else None}


def _packed_fields(node: Node, problem: GemmProblem, b_shape: tuple[int, ...]) -> dict:
    """packed_b and packed_depth of a node whose B pack-gemm-weights laid out (its input 1 [N / P, K', P]),
    checked against this machine's vector width."""
    if not node.attrs.get("packed_weights", 0):
        return {}
    _, depth, columns = b_shape
    lanes = vector_lanes(problem.dtype)
    if columns % lanes or columns // lanes > 4 or depth < round_up(problem.k, lanes):
        raise ValueError(f"node {node.name!r} ({node.qualified_op}): its B is packed in panels of {columns} columns "
                         f"x {depth} rows, which this machine's {lanes}-lane register tiles cannot read; compile the "
                         "model again from its ONNX file on (or for) this machine")
    return {"packed_b": columns, "packed_depth": depth}


def matmul_problem(dtype: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> GemmProblem:
    """The GEMM of numpy's matmul(a, b) for static shapes (integer MatMuls reuse its layouts)."""
    a_shape = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b_shape = b_shape + (1,) if len(b_shape) == 1 else b_shape
    (m, k), n = a_shape[-2:], b_shape[-1]
    rank = max(len(a_shape), len(b_shape)) - 2
    a_batch = (1,) * (rank - len(a_shape) + 2) + a_shape[:-2]
    b_batch = (1,) * (rank - len(b_shape) + 2) + b_shape[:-2]
    if math.prod(b_batch) == 1:  # one B for every A matrix: stack A's rows into one taller GEMM
        rows = math.prod(a_batch) * m
        return GemmProblem(dtype, (), rows, n, k, Layout((), k, 1), Layout((), n, 1), Layout((), n, 1))
    out_batch = tuple(max(x, y) for x, y in zip(a_batch, b_batch))
    return GemmProblem(dtype, out_batch, m, n, k,
                       Layout(_batch_strides(a_batch, m * k), k, 1), Layout(_batch_strides(b_batch, k * n), n, 1),
                       Layout(_batch_strides(out_batch, m * n), n, 1))


def _gemm_problem(graph: Graph, node: Node) -> GemmProblem:
    types = graph.input_types(node)
    a_shape, b_shape = types[0].shape, weights_shape(node, types[1].shape)
    trans_a, trans_b = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    m, k = a_shape[::-1] if trans_a else a_shape
    n = b_shape[0] if trans_b else b_shape[1]
    c_layout = None
    if len(types) > 2 and types[2] is not None:
        c_rows, c_cols = (1,) * (2 - len(types[2].shape)) + types[2].shape
        c_layout = Layout((), c_cols if c_rows != 1 else 0, 1 if c_cols != 1 else 0)
    problem = GemmProblem(types[0].dtype, (), m, n, k,
                          Layout((), 1, m) if trans_a else Layout((), k, 1),
                          Layout((), 1, k) if trans_b else Layout((), n, 1),
                          Layout((), n, 1), c_layout,
                          float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0)),
                          **_node_fields(node))
    return replace(problem, **_packed_fields(node, problem, types[1].shape))


_PROBLEMS = {"MatMul": _matmul_problem, "Gemm": _gemm_problem}


def linear_check(graph: Graph, node: Node) -> str | None:
    """Why a MatMul or Gemm node (or one fused with operands) is not compiled; None when it is."""
    dtypes = {t.dtype for t in graph.input_types(node) if t is not None}
    if not dtypes <= set(FLOATS):
        return (f"{node.qualified_op} on {', '.join(sorted(dtypes))} is not compiled by the cpu target "
                "(float32/float64 only)")
    return None


def linear_problem(graph: Graph, node: Node, op_type: str) -> GemmProblem:
    """The GEMM of a MatMul or Gemm (`op_type`) node, or of a fused node with that base."""
    return _PROBLEMS[op_type](graph, node)


def gemm_work_items(graph: Graph, node: Node, op_type: str) -> int:
    """Work items of a MatMul or Gemm (`op_type`) node, or of a fused node with that base."""
    return _PROBLEMS[op_type](graph, node).work_items


def gemm_batch_items(problem: GemmProblem, bound: int) -> BatchItems | None:
    """How the items walk a batch of `bound` (KernelSpec.batch_items): the problem's leading batch dim, or,
    stacked into rows, the row blocks of an entry's rows (items are batch, row block, column block); a
    bound counting every row of a batch of matrices (a dynamic extent's positions) takes their row blocks."""
    if problem.batch and problem.batch[0] % bound == 0:
        return batch_major(problem.work_items, bound)
    if problem.batch:
        plan = None if problem.dot_form else gemm_plan(problem)
        rows, columns = (1, DOT_COLUMNS) if plan is None else (plan.rows, plan.columns)
        return (1, rows, math.ceil(problem.n / columns)) \
            if bound == math.prod(problem.batch) * problem.m and problem.m % rows == 0 else None
    if problem.m % bound:
        return None
    if problem.dot_form:
        return problem.m // bound, 1, math.ceil(problem.n / DOT_COLUMNS)
    plan = gemm_plan(problem)
    return problem.m // bound, plan.rows, math.ceil(problem.n / plan.columns)


def linear_batch_items(graph: Graph, node: Node, op_type: str, bound: int) -> BatchItems | None:
    """gemm_batch_items of a MatMul or Gemm (`op_type`) node, or of a fused node with that base."""
    return gemm_batch_items(_PROBLEMS[op_type](graph, node), bound)


def emit_linear(ctx: KernelContext, op_type: str, epilogue: Epilogue | None = None) -> None:
    """The kernel of a MatMul or Gemm (`op_type`) node, or of a fused node with that base; `epilogue` maps
    each output before its store (columns index the output's last dim)."""
    problem = _PROBLEMS[op_type](ctx.graph, ctx.node)
    c = ctx.inputs[2] if op_type == "Gemm" and len(ctx.inputs) > 2 else None
    emit_gemm(ctx.builder, ctx.begin, ctx.end, problem, ctx.inputs[0].ptr, ctx.inputs[1].ptr, ctx.outputs[0].ptr,
              c.ptr if c is not None else None, epilogue, ctx.extent)


register_kernel(KernelSpec(tuple(_PROBLEMS), linear_check,
                           lambda graph, node: gemm_work_items(graph, node, node.op_type),
                           lambda ctx: emit_linear(ctx, ctx.node.op_type),
                           batch_items=lambda graph, node, bound: linear_batch_items(graph, node, node.op_type, bound)))
