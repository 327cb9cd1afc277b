"""The broadcasting loop nest every elementwise kernel shares.

The output is viewed as rows of its (coalesced) innermost dimension (compiler/codegen/broadcast_dims.py):
dims are merged while every input either spans both or broadcasts both, so the inner loop is as long as possible
and each input moves through it with a constant stride (0 or 1) that LLVM vectorizes. One
work item is one row, or a piece of PIECE elements of it when rows are longer (tensors of one
shape coalesce into a single row, which would otherwise run on one thread); row offsets come from
a div/mod walk done once per item. An operand of the output's shape is read at the output's own
index: when the memory plan computes the output over it (in place), LLVM sees one address and
vectorizes; an equal offset computed another way needs a runtime overlap check, which fails on
exactly overlapping ranges and sends every element down the scalar loop (10x slower for Erf).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from llvmlite import ir

from compiler.codegen.broadcast_dims import broadcast_strides, coalesce
from compiler.codegen.llvm.irhelpers import const_i64, for_range, load, store
from compiler.codegen.llvm.kernels.linear_algebra import rolled_range, smin
from compiler.codegen.llvm.kernels.registry import BatchItems, KernelContext, TensorArg, batch_major


PIECE = 8192  # elements of a row one work item computes at most
GROUP_ELEMENTS = 1024  # elements a work item of short rows computes at least (in whole rows)


def _pieces(inner: int) -> int:
    return -(-inner // PIECE)


def _group(out_dims: Sequence[int]) -> int:
    """Rows of dim -2 per work item: one, or a group of short ones (past the batch's dim: 3 dims at least)."""
    if len(out_dims) < 3 or out_dims[-1] >= GROUP_ELEMENTS:
        return 1
    per_item = -(-GROUP_ELEMENTS // out_dims[-1])
    return out_dims[-2] // -(-out_dims[-2] // per_item) if per_item < out_dims[-2] else out_dims[-2]


def _rows(out_dims: Sequence[int]) -> int:
    """Rows, or groups of rows, the items walk."""
    return math.prod(out_dims[:-2]) * -(-out_dims[-2] // _group(out_dims)) if len(out_dims) > 1 else 1


def row_count(out_shape: Sequence[int], in_shapes: Sequence[Sequence[int]]) -> int:
    """Work items of the loop: rows (or groups of rows) times the pieces of a row."""
    out_dims, _ = coalesce(out_shape, in_shapes)
    return _rows(out_dims) * _pieces(out_dims[-1])


def batch_row_items(out_shape: Sequence[int], in_shapes: Sequence[Sequence[int]], bound: int) -> BatchItems | None:
    """How the loop's items walk a batch of `bound` on axis 0 (KernelSpec.batch_items): whole rows per entry,
    or, for one coalesced row, the pieces that cover an entry's elements."""
    out_dims, _ = coalesce(out_shape, in_shapes)
    rows, inner = _rows(out_dims), out_dims[-1]
    if rows > 1:
        return batch_major(rows, bound, _pieces(inner))
    return (inner // bound, PIECE, 1) if inner % bound == 0 else None


def emit_broadcast_loop(ctx: KernelContext, operands: Sequence[TensorArg], output: TensorArg,
                        body: Callable[[ir.IRBuilder, list[ir.Value]], ir.Value]) -> None:
    """output[i] = body(operand values at i) over work items [ctx.begin, ctx.end) (pieces of rows)."""
    builder = ctx.builder
    out_dims, in_dims = coalesce(output.shape, [op.shape for op in operands])
    inner, pieces = out_dims[-1], _pieces(out_dims[-1])
    strides = [broadcast_strides(dims) for dims in in_dims]
    group = _group(out_dims)
    with for_range(builder, ctx.begin, ctx.end, name="item") as item:
        row, start, stop = item, const_i64(0), const_i64(inner)
        if pieces > 1:
            row = builder.udiv(item, const_i64(pieces))
            start = builder.mul(builder.urem(item, const_i64(pieces)), const_i64(PIECE))
            stop = smin(builder, builder.add(start, const_i64(PIECE)), const_i64(inner))
        if group == 1:
            out_base = builder.mul(row, const_i64(inner))
            _emit_row(builder, operands, output, body, strides, out_base,
                      _bases(builder, row, out_dims, in_dims, strides, out_base), start, stop)
        else:
            groups = -(-out_dims[-2] // group)  # item = (outer rows, group along dim -2)
            first = builder.add(builder.mul(builder.udiv(row, const_i64(groups)), const_i64(out_dims[-2])),
                                builder.mul(builder.urem(row, const_i64(groups)), const_i64(group)))
            count = smin(builder, const_i64(group), builder.sub(const_i64(out_dims[-2]),
                                                                 builder.urem(first, const_i64(out_dims[-2]))))
            first_base = builder.mul(first, const_i64(inner))
            bases = _bases(builder, first, out_dims, in_dims, strides, first_base)
            with for_range(builder, const_i64(0), count, name="group_row") as offset:
                row_bases = [builder.add(base, builder.mul(offset, const_i64(inner if dims == out_dims else
                                                                             operand_strides[-2])))
                             for base, dims, operand_strides in zip(bases, in_dims, strides)]
                _emit_row(builder, operands, output, body, strides,
                          builder.add(first_base, builder.mul(offset, const_i64(inner))), row_bases, start, stop)


def _bases(builder, row, out_dims, in_dims, strides, out_base) -> list[ir.Value]:
    """Each operand's offset at the start of coalesced row `row` (a div/mod walk over the outer dims)."""
    bases = []
    for dims, operand_strides in zip(in_dims, strides):
        if list(dims) == list(out_dims):
            bases.append(out_base)  # see the module docstring: in place, the very same address
            continue
        offset, remaining = const_i64(0), row
        for axis in range(len(out_dims) - 2, -1, -1):
            coordinate = builder.urem(remaining, const_i64(out_dims[axis]))
            remaining = builder.udiv(remaining, const_i64(out_dims[axis]))
            if operand_strides[axis]:
                offset = builder.add(offset, builder.mul(coordinate, const_i64(operand_strides[axis])))
        bases.append(offset)
    return bases


def _emit_row(builder, operands, output, body, strides, out_base, bases, start, stop) -> None:
    """output[out_base + col] = body(operands at base + col, at base where they broadcast), col in [start, stop).
    The loop is rolled: LLVM vectorizes it whole. Unrolled, a short row (the c lanes of a blocked layout) would
    leave the loop over rows innermost, which LLVM vectorizes across rows with gathers and scatters, or
    not at all: DenseNet's BatchNorm + Relu on [1, 16, 56, 56, 16] took 14x the time (1.02 ms, AMD Zen 4)."""
    with rolled_range(builder, start, stop, name="col") as col:
        values = []
        for operand, base, operand_strides in zip(operands, bases, strides):
            index = builder.add(base, col) if operand_strides[-1] else base
            values.append(load(builder, operand.ptr, operand.dtype, index))
        store(builder, body(builder, values), output.ptr, output.dtype, builder.add(out_base, col))
