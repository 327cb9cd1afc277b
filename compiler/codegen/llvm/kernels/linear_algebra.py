"""MatMul and Gemm through one cache-tiled GEMM loop nest (pointwise Conv reuses it).

A work item is (batch, block of MB output rows, block of NB output columns): it owns whole
output elements, so a reduction over K never crosses threads and results are the same for
any thread count. An item accumulates into a stack tile over K in blocks of KB, MR rows by
KU k-steps at a time; the innermost loop runs over contiguous columns of B (a transposed B
is packed into a stack panel first) so LLVM vectorizes it. Both buffers are allocas, which
LLVM knows alias nothing else, so the vectorized loop needs no runtime alias checks.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I1, I8, I64, PTR, const_i64, element_type, for_range, load, store
from compiler.codegen.llvm.kernels.math_functions import intrinsic
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

FLOATS = ("float32", "float64")
MB, NB, KB = 32, 256, 128  # tile: rows and columns per work item, k block (B panel KB x NB stays in L2)
PANEL_PAD = 16  # packed B rows are padded off the power-of-two NB, whose stride maps them to few cache sets
MR, KU = 8, 4  # micro step: rows and k-steps combined in one pass over a tile row (best measured on AVX2/512)


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
    module = builder.module
    disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    loop_id = ir.values.MDValue(module, [disable], name=str(len(module.metadata)))  # distinct: one per loop
    loop_id.operands = (loop_id, disable)
    latch = index.incomings[-1][1]
    latch.terminator.set_metadata("llvm.loop", loop_id)


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

    @property
    def tile(self) -> tuple[int, int, int]:
        return max(1, min(MB, self.m)), max(1, min(NB, self.n)), max(1, min(KB, self.k))

    @property
    def work_items(self) -> int:
        mb, nb, _ = self.tile
        return math.prod(self.batch) * math.ceil(self.m / mb) * math.ceil(self.n / nb)


class _GemmEmitter:
    def __init__(self, builder: ir.IRBuilder, problem: GemmProblem, a_ptr, b_ptr, out_ptr, c_ptr):
        self.builder, self.p = builder, problem
        self.a_ptr, self.b_ptr, self.out_ptr, self.c_ptr = a_ptr, b_ptr, out_ptr, c_ptr
        self.mb, self.nb, self.kb = problem.tile
        self.acc = stack_buffer(builder, problem.dtype, self.mb * self.nb)
        self.panel_stride = self.nb + PANEL_PAD
        packed = problem.b.col != 1
        self.packed = stack_buffer(builder, problem.dtype, self.kb * self.panel_stride) if packed else None

    def run(self, begin: ir.Value, end: ir.Value) -> None:
        b, p = self.builder, self.p
        with rolled_range(b, begin, end, name="item") as item:
            blocks = (math.ceil(p.m / self.mb), math.ceil(p.n / self.nb))
            *batch, row_block, col_block = unravel(b, item, p.batch + blocks)
            i0, j0 = b.mul(row_block, const_i64(self.mb)), b.mul(col_block, const_i64(self.nb))
            rows = smin(b, const_i64(self.mb), b.sub(const_i64(p.m), i0))
            cols = smin(b, const_i64(self.nb), b.sub(const_i64(p.n), j0))
            a_base = linear(b, batch + [i0], p.a.batch + (p.a.row,))
            b_base = linear(b, batch + [j0], p.b.batch + (p.b.col,))
            zero_fill(b, self.acc, p.dtype, self.mb * self.nb)
            with rolled_range(b, 0, p.k, self.kb, name="k0") as k0:
                depth = smin(b, const_i64(self.kb), b.sub(const_i64(p.k), k0))
                panel_base = linear(b, [k0], [p.b.row], b_base)
                if self.packed is None:
                    panel = (self.b_ptr, panel_base, p.b.row)
                else:
                    self._pack(panel_base, depth, cols)
                    panel = (self.packed, const_i64(0), self.panel_stride)
                a_block = linear(b, [k0], [p.a.col], a_base)
                self._accumulate(a_block, panel, rows, depth, cols)
            self._store(batch, i0, j0, rows, cols)

    def _pack(self, base: ir.Value, depth: ir.Value, cols: ir.Value) -> None:
        """Copy B[k0:k0+depth, j0:j0+cols] into the panel as rows of contiguous columns."""
        b, dtype = self.builder, self.p.dtype
        with rolled_range(b, 0, cols, name="pj") as j:
            column = linear(b, [j], [self.p.b.col], base)
            with rolled_range(b, 0, depth, name="pk") as k:
                value = load(b, self.b_ptr, dtype, linear(b, [k], [self.p.b.row], column))
                store(b, value, self.packed, dtype, b.add(b.mul(k, const_i64(self.panel_stride)), j))

    def _accumulate(self, a_block, panel, rows, depth, cols) -> None:
        """acc[rows, :cols] += a[rows, k block] @ panel, MR rows at a time then the leftover rows."""
        b = self.builder
        full_rows = b.sub(rows, b.urem(rows, const_i64(MR)))
        for start, stop, step in ((const_i64(0), full_rows, MR), (full_rows, rows, 1)):
            with rolled_range(b, start, stop, step, name="r") as row:
                full_depth = b.sub(depth, b.urem(depth, const_i64(KU)))
                for k_start, k_stop, k_step in ((const_i64(0), full_depth, KU), (full_depth, depth, 1)):
                    with rolled_range(b, k_start, k_stop, k_step, name="kk") as kk:
                        self._micro(a_block, panel, row, step, kk, k_step, cols)

    def _micro(self, a_block, panel, row, mr: int, kk, ku: int, cols) -> None:
        """acc[row:row+mr, :cols] += a[row:row+mr, kk:kk+ku] @ panel[kk:kk+ku, :cols], k in order."""
        b, p = self.builder, self.p
        a_values = [[load(b, self.a_ptr, p.dtype,
                          linear(b, [b.add(row, const_i64(r)), b.add(kk, const_i64(u))], [p.a.row, p.a.col], a_block))
                     for u in range(ku)] for r in range(mr)]
        panel_ptr, panel_base, panel_stride = panel
        panel_rows = [linear(b, [b.add(kk, const_i64(u))], [panel_stride], panel_base) for u in range(ku)]
        acc_rows = [b.mul(b.add(row, const_i64(r)), const_i64(self.nb)) for r in range(mr)]
        with rolled_range(b, 0, cols, name="j") as j:
            panel_values = [load(b, panel_ptr, p.dtype, b.add(base, j)) for base in panel_rows]
            for r in range(mr):
                index = b.add(acc_rows[r], j)
                total = load(b, self.acc, p.dtype, index)
                for u in range(ku):
                    total = multiply_add(b, a_values[r][u], panel_values[u], total)
                store(b, total, self.acc, p.dtype, index)

    def _store(self, batch, i0, j0, rows, cols) -> None:
        """out = alpha * acc + beta * c over the item's tile."""
        b, p = self.builder, self.p
        value_type = element_type(p.dtype)
        out_base = linear(b, batch + [i0, j0], p.out.batch + (p.out.row, p.out.col))
        c_base = None if p.c is None else linear(b, batch + [i0, j0], p.c.batch + (p.c.row, p.c.col))
        with rolled_range(b, 0, rows, name="sr") as r:
            with rolled_range(b, 0, cols, name="sj") as j:
                value = load(b, self.acc, p.dtype, b.add(b.mul(r, const_i64(self.nb)), j))
                if p.alpha != 1:
                    value = b.fmul(value, ir.Constant(value_type, p.alpha))
                if c_base is not None:
                    c_value = load(b, self.c_ptr, p.dtype, linear(b, [r, j], [p.c.row, p.c.col], c_base))
                    value = b.fadd(value, b.fmul(c_value, ir.Constant(value_type, p.beta)))
                store(b, value, self.out_ptr, p.dtype, linear(b, [r, j], [p.out.row, p.out.col], out_base))


def emit_gemm(builder: ir.IRBuilder, begin: ir.Value, end: ir.Value, problem: GemmProblem,
              a_ptr: ir.Value, b_ptr: ir.Value, out_ptr: ir.Value, c_ptr: ir.Value | None = None) -> None:
    """Compute work items [begin, end) of `problem` (see GemmProblem.work_items)."""
    _GemmEmitter(builder, problem, a_ptr, b_ptr, out_ptr, c_ptr).run(begin, end)


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
    return matmul_problem(a_type.dtype, a_type.shape, b_type.shape)


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
    a_shape, b_shape = types[0].shape, types[1].shape
    trans_a, trans_b = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    m, k = a_shape[::-1] if trans_a else a_shape
    n = b_shape[0] if trans_b else b_shape[1]
    c_layout = None
    if len(types) > 2 and types[2] is not None:
        c_rows, c_cols = (1,) * (2 - len(types[2].shape)) + types[2].shape
        c_layout = Layout((), c_cols if c_rows != 1 else 0, 1 if c_cols != 1 else 0)
    return GemmProblem(types[0].dtype, (), m, n, k,
                       Layout((), 1, m) if trans_a else Layout((), k, 1),
                       Layout((), 1, k) if trans_b else Layout((), n, 1),
                       Layout((), n, 1), c_layout,
                       float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0)))


_PROBLEMS = {"MatMul": _matmul_problem, "Gemm": _gemm_problem}


def _check(graph: Graph, node: Node) -> str | None:
    dtypes = {t.dtype for t in graph.input_types(node) if t is not None}
    if not dtypes <= set(FLOATS):
        return f"{node.op_type} on {', '.join(sorted(dtypes))} is not compiled by the cpu target (float32/float64 only)"
    return None


def _emit(ctx: KernelContext) -> None:
    problem = _PROBLEMS[ctx.node.op_type](ctx.graph, ctx.node)
    c = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    emit_gemm(ctx.builder, ctx.begin, ctx.end, problem, ctx.inputs[0].ptr, ctx.inputs[1].ptr, ctx.outputs[0].ptr,
              c.ptr if c is not None else None)


register_kernel(KernelSpec(tuple(_PROBLEMS), _check,
                           lambda graph, node: _PROBLEMS[node.op_type](graph, node).work_items, _emit))
