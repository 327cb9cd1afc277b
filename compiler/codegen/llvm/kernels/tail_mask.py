"""kiln::MaskTail (compiler/ops/tail_mask.py): positions >= s of a dynamic extent set to the fill value.

s is the run-time extent (KernelContext.extent). The tensor is viewed as [outer, periods, bound,
inner, rest]: a work item is one outer index, and writes the fill over the contiguous runs
(inner * rest elements) of positions s..bound-1 of each period, after copying the input slab
when the output does not share its storage.
"""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, element_type, for_range, store
from compiler.codegen.llvm.kernels.gather_nd import copy_elements
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, batch_major, register_kernel
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.tail_mask import OP_TYPE

FLOATS = ("float16", "float32", "float64")


def _view(node: Node) -> tuple[int, int, int, int]:
    """(outer items, periods of the dim along the axis, elements per position: inner * rest, slab size)."""
    shape, axis, inner, bound = node.outputs[0].shape, node.attrs["axis"], node.attrs["inner"], node.attrs["bound"]
    rest = math.prod(shape[axis + 1:])
    return math.prod(shape[:axis]), shape[axis] // (bound * inner), inner * rest, shape[axis] * rest


def _check(graph: Graph, node: Node) -> str | None:
    dtype = node.outputs[0].dtype
    return None if dtype in FLOATS else f"MaskTail on {dtype} is not compiled by the cpu target (float types only)"


def _emit(ctx: KernelContext) -> None:
    b, node = ctx.builder, ctx.node
    x, out = ctx.inputs[0], ctx.outputs[0]
    bound = node.attrs["bound"]
    _, periods, run, slab = _view(node)
    extent = ctx.extent if ctx.extent is not None else const_i64(bound)
    fill = ir.Constant(element_type(out.dtype), float(node.attrs["fill"]))
    with for_range(b, ctx.begin, ctx.end, name="outer") as outer:
        base = b.mul(outer, const_i64(slab))
        if x.ptr is not out.ptr:
            copy_elements(b, out.ptr, base, x.ptr, base, out.dtype, slab)
        with for_range(b, 0, periods, name="period") as period:
            with for_range(b, extent, bound, name="position") as position:
                start = b.add(base, b.mul(b.add(b.mul(period, const_i64(bound)), position), const_i64(run)))
                with for_range(b, 0, run, name="element") as element:
                    store(b, fill, out.ptr, out.dtype, b.add(start, element))


def _work_items(graph: Graph, node: Node) -> int:
    return _view(node)[0]


register_kernel(KernelSpec((f"{KILN_DOMAIN}::{OP_TYPE}",), _check, _work_items, _emit,
                           in_place=lambda graph, node: 0,
                           batch_items=lambda graph, node, bound: batch_major(_work_items(graph, node), bound)))
