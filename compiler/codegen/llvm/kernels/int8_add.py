"""kiln::QuantizedAdd: one pass over the elements, in the float32 steps of the unfused QDQ nodes
(compiler/ops/quantized_add.py); LLVM vectorizes the element loop. The result is seen as rows of
b's size (one row when b has its shape: b repeats along the rows); a work item is a block of a row."""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, I32, const_i64, convert, load, store
from compiler.codegen.llvm.kernels.linear_algebra import rolled_range, smin, unravel
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import KILN_DOMAIN, Graph, Node

BLOCK = 16384  # elements per work item, at most


def _layout(graph: Graph, node: Node) -> tuple[int, int]:
    """(rows, period): the result as rows of b's size (one row when b has the result's shape)."""
    period = math.prod(graph.input_types(node)[1].shape)
    return math.prod(node.outputs[0].shape) // period, period


def _emit(ctx: KernelContext) -> None:
    b, attrs = ctx.builder, ctx.node.attrs
    (a, c), out = ctx.inputs, ctx.outputs[0]
    rows, period = _layout(ctx.graph, ctx.node)

    def dequantized(arg, index, name: str) -> ir.Value:
        difference = b.sub(convert(b, load(b, arg.ptr, arg.dtype, index), arg.dtype, "int32"),
                           ir.Constant(I32, attrs[f"{name}_zero_point"]))
        return b.fmul(b.sitofp(difference, F32), float_constant(F32, attrs[f"{name}_scale"]))

    with rolled_range(b, ctx.begin, ctx.end, name="item") as item:
        row, block = unravel(b, item, (rows, math.ceil(period / BLOCK)))
        start, base = b.mul(block, const_i64(BLOCK)), b.mul(row, const_i64(period))
        with rolled_range(b, start, smin(b, b.add(start, const_i64(BLOCK)), const_i64(period)), name="element") as j:
            i = b.add(base, j)
            total = b.fadd(dequantized(a, i, "a"), dequantized(c, j, "b"))
            rounded = intrinsic(b, "roundeven", b.fdiv(total, float_constant(F32, attrs["y_scale"])))
            value = b.fadd(rounded, float_constant(F32, attrs["y_zero_point"]))
            value = intrinsic(b, "maxnum", value, float_constant(F32, attrs["low"]))
            value = intrinsic(b, "minnum", value, float_constant(F32, attrs["high"]))
            store(b, convert(b, value, "float32", out.dtype), out.ptr, out.dtype, i)


def _work_items(graph: Graph, node: Node) -> int:
    rows, period = _layout(graph, node)
    return rows * math.ceil(period / BLOCK)


register_kernel(KernelSpec((f"{KILN_DOMAIN}::QuantizedAdd",), lambda graph, node: None, _work_items, _emit))
