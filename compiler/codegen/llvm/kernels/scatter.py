"""ScatterElements (and the deprecated Scatter), ScatterND and TensorScatter.

The output starts as a copy of the data; then the updates are applied in the order of the
indices, so duplicate indices overwrite or reduce in one fixed order. Each work item owns a
fixed part of the output: it copies that part and applies, in index order, every update
landing in it, so results do not depend on how the threads split the items. Negative
indices count from the end of their axis; indices still out of range are skipped, so a bad
index never writes outside the output.
"""

from __future__ import annotations

import functools
import math
from contextlib import ExitStack
from typing import NamedTuple

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I1, const_i64, convert, for_range, kind_of, load, store
from compiler.codegen.llvm.kernels.gather_nd import INDEX_DTYPES, NUMERIC_KINDS, copy_elements, read_index
from compiler.codegen.llvm.kernels.linear_algebra import linear, smin, unravel
from compiler.codegen.llvm.kernels.math_functions import select_max, select_min
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

REDUCTIONS = ("none", "add", "mul", "max", "min")
ELEMENTS_RUN = 256  # ScatterElements: contiguous elements per line segment a work item copies
ROW_BLOCKS = 16  # ScatterND work items along the indexed rows; each scans every index tuple
COLUMN_CHUNK = 4096  # ScatterND elements of a slice per work item


def _combine(b: ir.IRBuilder, reduction: str, dtype: str, current: ir.Value, update: ir.Value,
             nan_propagates: bool) -> ir.Value:
    """The new output element. ScatterND's max/min propagate NaN (numpy's maximum);
    ScatterElements' keep the current value unless the update compares greater/less (Python's max)."""
    kind = kind_of(dtype)
    if reduction == "none":
        return update
    if reduction in ("add", "mul"):
        return getattr(b, ("f" if kind == "float" else "") + reduction)(current, update)
    if nan_propagates and dtype == "float16":  # no half intrinsics; max/min pick an operand, so float32 is exact
        wide = (convert(b, value, dtype, "float32") for value in (current, update))
        return convert(b, _combine(b, reduction, "float32", *wide, nan_propagates), "float32", dtype)
    if nan_propagates:
        return (select_max if reduction == "max" else select_min)(b, current, update, kind)
    order = ">" if reduction == "max" else "<"
    if kind == "float":
        better = b.fcmp_ordered(order, update, current)
    else:
        better = (b.icmp_signed if kind == "signed" else b.icmp_unsigned)(order, update, current)
    return b.select(better, update, current)


def _apply(b: ir.IRBuilder, ctx: KernelContext, reduction: str, target, source, nan_propagates: bool) -> None:
    """out[target] = combine(out[target], updates[source])."""
    updates, out = ctx.inputs[2], ctx.outputs[0]
    update = load(b, updates.ptr, updates.dtype, source)
    current = load(b, out.ptr, out.dtype, target) if reduction != "none" else None
    store(b, _combine(b, reduction, out.dtype, current, update, nan_propagates), out.ptr, out.dtype, target)


def _check_common(graph: Graph, node: Node) -> str | None:
    data, indices = graph.input_types(node)[:2]
    reduction = node.attrs.get("reduction", "none")
    if reduction not in REDUCTIONS:
        return f"{node.op_type} reduction '{reduction}' is not one of {', '.join(REDUCTIONS)}"
    if reduction != "none" and kind_of(data.dtype) not in NUMERIC_KINDS:
        return f"{node.op_type} reduction '{reduction}' on {data.dtype} is not compiled by the cpu target"
    if indices.dtype not in INDEX_DTYPES:
        return f"{node.op_type} with {indices.dtype} indices is not compiled by the cpu target (int32/int64 only)"
    return None


# ----- ScatterElements / Scatter --------------------------------------------------------------
def _elements_axis(graph: Graph, node: Node) -> int:
    return node.attrs.get("axis", 0) % len(graph.input_types(node)[0].shape)


class _ElementsLayout(NamedTuple):
    """The data seen as outer dims x axis x lead (the dim after the axis, 1 if none) x tail
    elements. A work item is one outer position and a block of `block` lead coordinates: it owns
    whole lines along the axis, and copies runs of block x tail contiguous elements."""

    outer: tuple[int, ...]
    lead: int
    tail: int
    block: int

    @property
    def blocks(self) -> int:
        return -(-self.lead // self.block)

    @property
    def items(self) -> int:
        return math.prod(self.outer) * self.blocks


def _elements_layout(graph: Graph, node: Node) -> _ElementsLayout:
    shape, axis = graph.input_types(node)[0].shape, _elements_axis(graph, node)
    lead, tail = (shape[axis + 1:axis + 2] or (1,))[0], math.prod(shape[axis + 2:])
    return _ElementsLayout(shape[:axis], lead, tail, max(1, min(lead, -(-ELEMENTS_RUN // max(1, tail)))))


def _check_elements(graph: Graph, node: Node) -> str | None:
    problem = _check_common(graph, node)
    if problem:
        return problem
    data, indices, updates = graph.input_types(node)
    rank, axis = len(data.shape), node.attrs.get("axis", 0)
    if not -rank <= axis < rank:
        return f"{node.op_type} axis {axis} is out of range for rank {rank}"
    if updates.shape != indices.shape or len(indices.shape) != rank:
        return (f"{node.op_type} indices {indices.shape} and updates {updates.shape} must have one shape, "
                f"of the rank of data {data.shape}")
    if any(i > d for a, (i, d) in enumerate(zip(indices.shape, data.shape)) if a != axis % rank):
        return f"{node.op_type} indices {indices.shape} are larger than data {data.shape} off the axis"
    return None


def _emit_elements(ctx: KernelContext) -> None:
    """Per item: copy its lines, then for j along the indices' axis (in order) and every position
    of the indices' later dims: out[..., idx, ...] = combine(out[..., idx, ...], updates[..., j, ...])."""
    b, (data, indices, _), out = ctx.builder, ctx.inputs, ctx.outputs[0]
    reduction, axis = ctx.node.attrs.get("reduction", "none"), _elements_axis(ctx.graph, ctx.node)
    layout, shape, ishape = _elements_layout(ctx.graph, ctx.node), data.shape, indices.shape
    index_lead, index_lead_stride = (ishape[axis + 1:axis + 2] or (1,))[0], math.prod(ishape[axis + 2:])
    with for_range(b, ctx.begin, ctx.end, name="item") as item:
        coords = unravel(b, b.udiv(item, const_i64(layout.blocks)), layout.outer)
        first = b.mul(b.urem(item, const_i64(layout.blocks)), const_i64(layout.block))
        base = linear(b, coords + [first], data.strides[:axis] + (layout.tail,))
        if layout.blocks == 1:  # the item's lines are one contiguous block
            copy_elements(b, out.ptr, base, data.ptr, base, data.dtype, shape[axis] * layout.lead * layout.tail)
        else:
            leads = smin(b, const_i64(layout.block), b.sub(const_i64(layout.lead), first))
            width = b.mul(leads, const_i64(layout.tail))
            with for_range(b, 0, shape[axis], name="line") as t:
                offset = b.add(base, b.mul(t, const_i64(data.strides[axis])))
                copy_elements(b, out.ptr, offset, data.ptr, offset, data.dtype, width)
        with ExitStack() as scope:
            inside = [b.icmp_signed("<", coords[d], const_i64(ishape[d])) for d in range(axis) if ishape[d] < shape[d]]
            if inside:  # the item's lines lie past the indices' extent
                scope.enter_context(b.if_then(functools.reduce(b.and_, inside)))
            leads = smin(b, const_i64(layout.block), b.sub(const_i64(index_lead), first))
            source = linear(b, coords + [first], indices.strides[:axis] + (index_lead_stride,))
            j = scope.enter_context(for_range(b, 0, ishape[axis], name="j"))
            source, target = b.add(source, b.mul(j, const_i64(indices.strides[axis]))), base
            step = scope.enter_context(for_range(b, 0, leads, name="lead"))
            source = b.add(source, b.mul(step, const_i64(index_lead_stride)))
            target = b.add(target, b.mul(step, const_i64(layout.tail)))
            for d in range(axis + 2, len(shape)):
                step = scope.enter_context(for_range(b, 0, ishape[d], name=f"d{d}"))
                source = b.add(source, b.mul(step, const_i64(indices.strides[d])))
                target = b.add(target, b.mul(step, const_i64(data.strides[d])))
            index, valid = read_index(b, indices.ptr, indices.dtype, source, shape[axis])
            with b.if_then(valid):
                target = b.add(target, b.mul(index, const_i64(data.strides[axis])))
                _apply(b, ctx, reduction, target, source, nan_propagates=False)


register_kernel(KernelSpec(("ScatterElements", "Scatter"), _check_elements,
                           lambda graph, node: _elements_layout(graph, node).items, _emit_elements))


# ----- ScatterND ------------------------------------------------------------------------------
def _nd_layout(graph: Graph, node: Node) -> tuple[int, int, int, int]:
    """(rows R, slice size S, rows per block, columns per chunk): the output seen as R x S, one
    row per index tuple target; a work item is a block of rows x a chunk of columns."""
    data, indices = graph.input_types(node)[:2]
    depth = indices.shape[-1]
    rows, size = math.prod(data.shape[:depth]), math.prod(data.shape[depth:])
    chunk = max(1, min(size, COLUMN_CHUNK))
    chunks = -(-size // chunk)
    blocks = min(rows, max(1, -(-ROW_BLOCKS // chunks)))
    return rows, size, -(-rows // max(1, blocks)), chunk


def _nd_items(graph: Graph, node: Node) -> int:
    rows, size, block, chunk = _nd_layout(graph, node)
    return -(-rows // block) * -(-size // chunk) if rows and size else 0


def _check_nd(graph: Graph, node: Node) -> str | None:
    problem = _check_common(graph, node)
    if problem:
        return problem
    data, indices, updates = graph.input_types(node)
    if not indices.shape or indices.shape[-1] > len(data.shape):
        return f"ScatterND indices {indices.shape} do not fit data {data.shape}"
    if updates.shape != indices.shape[:-1] + data.shape[indices.shape[-1]:]:
        return f"ScatterND updates {updates.shape} must have shape indices[:-1] + data[q:] for data {data.shape}"
    return None


def _emit_nd(ctx: KernelContext) -> None:
    """Per item: copy its rows x columns, then for each index tuple in order whose row falls in
    the item's block, combine its update slice into that row's columns."""
    b, (data, indices, _), out = ctx.builder, ctx.inputs, ctx.outputs[0]
    reduction = ctx.node.attrs.get("reduction", "none")
    rows, size, block, chunk = _nd_layout(ctx.graph, ctx.node)
    depth, tuples = indices.shape[-1], math.prod(indices.shape[:-1])
    row_strides = [math.prod(data.shape[d + 1:depth]) for d in range(depth)]
    chunks = -(-size // chunk)
    with for_range(b, ctx.begin, ctx.end, name="item") as item:
        first_row = b.mul(b.udiv(item, const_i64(chunks)), const_i64(block))
        last_row = smin(b, b.add(first_row, const_i64(block)), const_i64(rows))
        column = b.mul(b.urem(item, const_i64(chunks)), const_i64(chunk))
        width = smin(b, const_i64(chunk), b.sub(const_i64(size), column))
        with for_range(b, first_row, last_row, name="row") as row:
            offset = b.add(b.mul(row, const_i64(size)), column)
            copy_elements(b, out.ptr, offset, data.ptr, offset, data.dtype, width)
        with for_range(b, 0, tuples, name="tuple") as n:
            row, valid = const_i64(0), ir.Constant(I1, 1)
            for d in range(depth):
                position = b.add(b.mul(n, const_i64(depth)), const_i64(d))
                index, inside = read_index(b, indices.ptr, indices.dtype, position, data.shape[d])
                row, valid = b.add(row, b.mul(index, const_i64(row_strides[d]))), b.and_(valid, inside)
            mine = b.and_(valid, b.and_(b.icmp_signed(">=", row, first_row), b.icmp_signed("<", row, last_row)))
            with b.if_then(mine):
                target, source = b.add(b.mul(row, const_i64(size)), column), b.add(b.mul(n, const_i64(size)), column)
                with for_range(b, 0, width, name="column") as s:
                    _apply(b, ctx, reduction, b.add(target, s), b.add(source, s), nan_propagates=True)


register_kernel(KernelSpec(("ScatterND",), _check_nd, _nd_items, _emit_nd))


# ----- TensorScatter --------------------------------------------------------------------------
def _tensor_axis(graph: Graph, node: Node) -> int:
    return node.attrs.get("axis", -2) % len(graph.input_types(node)[0].shape)


def _check_tensor(graph: Graph, node: Node) -> str | None:
    cache, update = graph.input_types(node)[:2]
    rank, axis, mode = len(cache.shape), node.attrs.get("axis", -2), node.attrs.get("mode", "linear")
    if mode not in ("linear", "circular"):
        return f"TensorScatter mode '{mode}' is not linear or circular"
    if not -rank <= axis < rank or axis % rank == 0:
        return f"TensorScatter axis {axis} must name a dim after the batch dim of rank-{rank} caches"
    axis %= rank
    fits = len(update.shape) == rank and update.shape[axis] <= cache.shape[axis]
    if not fits or any(update.shape[d] != cache.shape[d] for d in range(rank) if d != axis):
        return f"TensorScatter update {update.shape} does not fit cache {cache.shape} along axis {axis}"
    types = graph.input_types(node)
    write = types[2] if len(types) > 2 else None
    if write is not None and (write.dtype not in INDEX_DTYPES or write.shape != cache.shape[:1]):
        return f"TensorScatter write_indices must be {cache.shape[0]} int64 values, not {write}"
    return None


def _emit_tensor(ctx: KernelContext) -> None:
    """Per prefix (the dims before the axis): copy its cache block, then write update row j at
    write_indices[batch] + j (mod the cache length when circular; skipped when out of range)."""
    b, cache, update, out = ctx.builder, ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    write = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    axis, circular = _tensor_axis(ctx.graph, ctx.node), ctx.node.attrs.get("mode", "linear") == "circular"
    length, count, inner = cache.shape[axis], update.shape[axis], math.prod(cache.shape[axis + 1:])
    per_batch = max(1, math.prod(cache.shape[1:axis]))
    with for_range(b, ctx.begin, ctx.end, name="prefix") as prefix:
        block = b.mul(prefix, const_i64(length * inner))
        copy_elements(b, out.ptr, block, cache.ptr, block, cache.dtype, length * inner)
        start = const_i64(0)
        if write is not None:
            batch = b.udiv(prefix, const_i64(per_batch))
            start = convert(b, load(b, write.ptr, write.dtype, batch), write.dtype, "int64")
        with for_range(b, 0, count, name="j") as j:
            position = b.add(start, j)
            if circular:
                position = b.srem(position, const_i64(length))
                negative = b.icmp_signed("<", position, const_i64(0))
                position = b.select(negative, b.add(position, const_i64(length)), position)
            with b.if_then(b.icmp_unsigned("<", position, const_i64(length))):
                source = b.mul(b.add(b.mul(prefix, const_i64(count)), j), const_i64(inner))
                target = b.add(block, b.mul(position, const_i64(inner)))
                copy_elements(b, out.ptr, target, update.ptr, source, cache.dtype, inner)


def _prefixes(graph: Graph, node: Node) -> int:
    return math.prod(graph.input_types(node)[0].shape[:_tensor_axis(graph, node)])


register_kernel(KernelSpec(("TensorScatter",), _check_tensor, _prefixes, _emit_tensor))
