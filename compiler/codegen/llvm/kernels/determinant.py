"""Det: the determinant of each square matrix by LU factorization with partial pivoting.

A work item is one matrix. It is copied into a stack scratch and reduced to upper triangular
form column by column; the pivot is the first largest magnitude in its column (as LAPACK's
getrf picks it), each row swap flips the sign, and the determinant is the product of the
pivots. A zero pivot leaves the determinant 0 and skips its elimination, so a singular
matrix gives 0 rather than NaN.
"""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I64, const_i64, element_type, for_range, load, store
from compiler.codegen.llvm.kernels.gather_nd import copy_elements
from compiler.codegen.llvm.kernels.linear_algebra import multiply_add, stack_buffer
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

FLOATS = ("float32", "float64")
MAX_SCRATCH_BYTES = 1 << 20  # one matrix copy on the thread's stack


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    if x.dtype not in FLOATS:
        return f"Det on {x.dtype} is not compiled by the cpu target (float32/float64 only)"
    if len(x.shape) < 2 or x.shape[-1] != x.shape[-2]:
        return f"Det needs square matrices in the last two dims, not shape {x.shape}"
    size = x.shape[-1]
    if size * size * (4 if x.dtype == "float32" else 8) > MAX_SCRATCH_BYTES:
        return f"Det of {size}x{size} matrices is not compiled by the cpu target (its scratch copy must fit 1 MiB)"
    return None


def _emit(ctx: KernelContext) -> None:
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    size, dtype = x.shape[-1], x.dtype
    value_type = element_type(dtype)
    a = stack_buffer(b, dtype, size * size)
    det, best_row, best_magnitude = b.alloca(value_type), b.alloca(I64), b.alloca(value_type)

    def at(row: ir.Value, column: ir.Value) -> ir.Value:
        return b.add(b.mul(row, const_i64(size)), column)

    with for_range(b, ctx.begin, ctx.end, name="matrix") as matrix:
        copy_elements(b, a, const_i64(0), x.ptr, b.mul(matrix, const_i64(size * size)), dtype, size * size)
        b.store(float_constant(value_type, 1.0), det)
        with for_range(b, 0, size, name="column") as c:
            b.store(c, best_row)
            b.store(intrinsic(b, "fabs", load(b, a, dtype, at(c, c))), best_magnitude)
            with for_range(b, b.add(c, const_i64(1)), size, name="search") as r:
                magnitude = intrinsic(b, "fabs", load(b, a, dtype, at(r, c)))
                larger = b.fcmp_ordered(">", magnitude, b.load(best_magnitude, typ=value_type))
                b.store(b.select(larger, r, b.load(best_row, typ=I64)), best_row)
                b.store(b.select(larger, magnitude, b.load(best_magnitude, typ=value_type)), best_magnitude)
            pivot_row = b.load(best_row, typ=I64)
            swapped = b.icmp_signed("!=", pivot_row, c)
            with b.if_then(swapped):
                with for_range(b, c, size, name="swap") as j:
                    upper, lower = load(b, a, dtype, at(c, j)), load(b, a, dtype, at(pivot_row, j))
                    store(b, lower, a, dtype, at(c, j))
                    store(b, upper, a, dtype, at(pivot_row, j))
            pivot = load(b, a, dtype, at(c, c))
            product = b.fmul(b.load(det, typ=value_type), pivot)
            b.store(b.select(swapped, b.fneg(product), product), det)
            with b.if_then(b.fcmp_unordered("!=", pivot, float_constant(value_type, 0.0))):
                with for_range(b, b.add(c, const_i64(1)), size, name="row") as r:
                    factor = b.fneg(b.fdiv(load(b, a, dtype, at(r, c)), pivot))
                    with for_range(b, b.add(c, const_i64(1)), size, name="j") as j:
                        updated = multiply_add(b, factor, load(b, a, dtype, at(c, j)), load(b, a, dtype, at(r, j)))
                        store(b, updated, a, dtype, at(r, j))
        store(b, b.load(det, typ=value_type), y.ptr, dtype, matrix)


register_kernel(KernelSpec(("Det",), _check, lambda graph, node: math.prod(graph.input_types(node)[0].shape[:-2]),
                           _emit))
