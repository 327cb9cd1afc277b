"""kiln::MaskTail and kiln::ExtentScale (compiler/ops/tail_mask.py) on the cpu.

MaskTail: the positions past the valid ones of a dynamic dim (the first `reach` of them) set to the
fill value. The valid count is computed from the call's sizes (KernelContext.extents). The tensor is
viewed as [outer, periods, bound, inner, rest]: a work item is one outer index, and writes the fill
over the contiguous runs (inner * rest elements) of those positions of each period, after copying the
input slab when the output does not share its storage.

ExtentScale: every element times the product of the bounds over the product of the valid counts; a
work item is a chunk of CHUNK elements.
"""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.llvm.extent_launch import emit_extent_size
from compiler.codegen.llvm.irhelpers import const_i64, element_type, for_range, load, store
from compiler.codegen.llvm.kernels.gather_nd import copy_elements
from compiler.codegen.llvm.kernels.linear_algebra import smin
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, batch_major, register_kernel
from compiler.extent_types import Extent
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.tail_mask import OP_TYPE, SCALE_OP_TYPE

FLOATS = ("float16", "float32", "float64")
CHUNK = 4096


def _view(node: Node) -> tuple[int, int, int, int]:
    """(outer items, periods of the dim along the axis, elements per position: inner * rest, slab size)."""
    shape, axis, inner, bound = node.outputs[0].shape, node.attrs["axis"], node.attrs["inner"], node.attrs["bound"]
    rest = math.prod(shape[axis + 1:])
    return math.prod(shape[:axis]), shape[axis] // (bound * inner), inner * rest, shape[axis] * rest


def _check(graph: Graph, node: Node) -> str | None:
    dtype = node.outputs[0].dtype
    return None if dtype in FLOATS else \
        f"{node.op_type} on {dtype} is not compiled by the cpu target (float types only)"


def _valid(ctx: KernelContext, extent: Extent, bound: int) -> ir.Value:
    """The valid positions at the call's sizes (all `bound` of them when compiled without sizes)."""
    return const_i64(bound) if ctx.extents is None else emit_extent_size(ctx.builder, ctx.extents, extent)


def _emit_mask(ctx: KernelContext) -> None:
    b, node = ctx.builder, ctx.node
    x, out = ctx.inputs[0], ctx.outputs[0]
    bound = node.attrs["bound"]
    _, periods, run, slab = _view(node)
    valid = _valid(ctx, Extent.from_json(node.attrs["extent"]), bound)
    fill = ir.Constant(element_type(out.dtype), float(node.attrs["fill"]))
    with for_range(b, ctx.begin, ctx.end, name="outer") as outer:
        base = b.mul(outer, const_i64(slab))
        if x.ptr is not out.ptr:
            copy_elements(b, out.ptr, base, x.ptr, base, out.dtype, slab)
        with for_range(b, 0, periods, name="period") as period:
            with for_range(b, valid, smin(b, b.add(valid, const_i64(node.attrs["reach"])), const_i64(bound)),
                           name="position") as position:
                start = b.add(base, b.mul(b.add(b.mul(period, const_i64(bound)), position), const_i64(run)))
                with for_range(b, 0, run, name="element") as element:
                    store(b, fill, out.ptr, out.dtype, b.add(start, element))


def _emit_scale(ctx: KernelContext) -> None:
    b, node = ctx.builder, ctx.node
    x, out = ctx.inputs[0], ctx.outputs[0]
    value_type = element_type(out.dtype)
    ratio = ir.Constant(value_type, 1.0)
    for extent, bound in zip(node.attrs["extents"], node.attrs["bounds"]):
        valid = b.sitofp(_valid(ctx, Extent.from_json(extent), bound), value_type)
        ratio = b.fmul(ratio, b.fdiv(ir.Constant(value_type, float(bound)), valid))
    with for_range(b, ctx.begin, ctx.end, name="chunk") as chunk:
        start = b.mul(chunk, const_i64(CHUNK))
        stop = smin(b, b.add(start, const_i64(CHUNK)), const_i64(out.size))
        with for_range(b, start, stop, name="element") as element:
            store(b, b.fmul(load(b, x.ptr, x.dtype, element), ratio), out.ptr, out.dtype, element)


def _mask_items(graph: Graph, node: Node) -> int:
    return _view(node)[0]


register_kernel(KernelSpec((f"{KILN_DOMAIN}::{OP_TYPE}",), _check, _mask_items, _emit_mask,
                           in_place=lambda graph, node: 0,
                           batch_items=lambda graph, node, bound: batch_major(_mask_items(graph, node), bound)))
register_kernel(KernelSpec((f"{KILN_DOMAIN}::{SCALE_OP_TYPE}",), _check,
                           lambda graph, node: -(-math.prod(node.outputs[0].shape) // CHUNK), _emit_scale,
                           in_place=lambda graph, node: 0))
