"""The broadcasting loop nest every elementwise kernel shares.

The output is viewed as rows of its (coalesced) innermost dimension (compiler/codegen/broadcast_dims.py):
dims are merged while every input either spans both or broadcasts both, so the inner loop is as long as possible
and each input moves through it with a constant stride (0 or 1) that LLVM vectorizes. One
work item is one row; row offsets come from a div/mod walk done once per row.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from llvmlite import ir

from compiler.codegen.broadcast_dims import broadcast_strides, coalesce
from compiler.codegen.llvm.irhelpers import const_i64, for_range, load, store
from compiler.codegen.llvm.kernels.registry import KernelContext, TensorArg


def row_count(out_shape: Sequence[int], in_shapes: Sequence[Sequence[int]]) -> int:
    out_dims, _ = coalesce(out_shape, in_shapes)
    return math.prod(out_dims[:-1])


def emit_broadcast_loop(ctx: KernelContext, operands: Sequence[TensorArg], output: TensorArg,
                        body: Callable[[ir.IRBuilder, list[ir.Value]], ir.Value]) -> None:
    """output[i] = body(operand values at i) over work items [ctx.begin, ctx.end) (rows)."""
    builder = ctx.builder
    out_dims, in_dims = coalesce(output.shape, [op.shape for op in operands])
    inner = out_dims[-1]
    strides = [broadcast_strides(dims) for dims in in_dims]
    with for_range(builder, ctx.begin, ctx.end, name="row") as row:
        bases = []
        for operand_strides in strides:
            offset, remaining = const_i64(0), row
            for axis in range(len(out_dims) - 2, -1, -1):
                coordinate = builder.urem(remaining, const_i64(out_dims[axis]))
                remaining = builder.udiv(remaining, const_i64(out_dims[axis]))
                if operand_strides[axis]:
                    offset = builder.add(offset, builder.mul(coordinate, const_i64(operand_strides[axis])))
            bases.append(offset)
        out_base = builder.mul(row, const_i64(inner))
        with for_range(builder, 0, inner, name="col") as col:
            values = []
            for operand, base, operand_strides in zip(operands, bases, strides):
                index = builder.add(base, col) if operand_strides[-1] else base
                values.append(load(builder, operand.ptr, operand.dtype, index))
            store(builder, body(builder, values), output.ptr, output.dtype, builder.add(out_base, col))
