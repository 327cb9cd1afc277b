"""GatherND: each index tuple picks one slice of the data, copied whole into the output.

A work item is one index tuple (its batch and position in the indices), so items are
independent. Negative indices count from the end of their axis; indices still out of range
are clamped to it, as Gather does, so a bad index never reads outside the data.

Also home to what the other indexing kernels share: reading an index, copying a run of elements.
"""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I1, I64, PTR, const_i64, convert, element_pointer, for_range, load
from compiler.codegen.llvm.kernels.linear_algebra import smax, smin
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node
from compiler.ir.types import numpy_dtype

INDEX_DTYPES = ("int32", "int64")
NUMERIC_KINDS = ("float", "signed", "unsigned")  # dtypes whose values kernels compute on; others are only moved


def copy_elements(builder: ir.IRBuilder, target, target_index, source, source_index, dtype: str, count) -> None:
    """memcpy `count` (an int or i64) elements of `dtype` from source[source_index] to target[target_index]."""
    memcpy = builder.module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
    count = const_i64(count) if isinstance(count, int) else count
    size = builder.mul(count, const_i64(numpy_dtype(dtype).itemsize))
    builder.call(memcpy, [element_pointer(builder, target, dtype, target_index),
                          element_pointer(builder, source, dtype, source_index), size, ir.Constant(I1, 0)])


def read_index(builder: ir.IRBuilder, indices, dtype: str, position, axis_size: int) -> tuple[ir.Value, ir.Value]:
    """(index as i64 with negatives counted from `axis_size`, whether it lies in [0, axis_size))."""
    index = convert(builder, load(builder, indices, dtype, position), dtype, "int64")
    negative = builder.icmp_signed("<", index, const_i64(0))
    index = builder.select(negative, builder.add(index, const_i64(axis_size)), index)
    inside = builder.icmp_unsigned("<", index, const_i64(axis_size))  # unsigned: negatives are huge
    return index, inside


def _check(graph: Graph, node: Node) -> str | None:
    data, indices = graph.input_types(node)
    batch_dims = node.attrs.get("batch_dims", 0)
    if indices.dtype not in INDEX_DTYPES:
        return f"GatherND with {indices.dtype} indices is not compiled by the cpu target (int32/int64 only)"
    if not indices.shape or data.shape[:batch_dims] != indices.shape[:batch_dims]:
        return f"GatherND indices {indices.shape} do not match data {data.shape} with batch_dims={batch_dims}"
    depth = indices.shape[-1]
    if batch_dims + depth > len(data.shape):
        return f"GatherND index tuples of length {depth} are too long for data of rank {len(data.shape)}"
    if 0 in data.shape[batch_dims:batch_dims + depth] and math.prod(indices.shape):
        return "GatherND from an empty axis has nothing to gather"
    return None


def _emit(ctx: KernelContext) -> None:
    """out[t, :] = data[batch(t), clamp(idx[t, 0]), ..., clamp(idx[t, q-1]), :] for tuples t of the item range."""
    b, (data, indices), out = ctx.builder, ctx.inputs, ctx.outputs[0]
    batch_dims = ctx.node.attrs.get("batch_dims", 0)
    depth = indices.shape[-1]
    per_batch = max(1, math.prod(indices.shape[batch_dims:-1]))
    indexed = data.shape[batch_dims:batch_dims + depth]
    slice_size = math.prod(data.shape[batch_dims + depth:])
    batch_stride, strides = math.prod(data.shape[batch_dims:]), data.strides[batch_dims:batch_dims + depth]
    with for_range(b, ctx.begin, ctx.end, name="tuple") as item:
        source = b.mul(b.udiv(item, const_i64(per_batch)), const_i64(batch_stride))
        for axis, (size, stride) in enumerate(zip(indexed, strides)):
            position = b.add(b.mul(item, const_i64(depth)), const_i64(axis))
            index, _ = read_index(b, indices.ptr, indices.dtype, position, size)
            index = smax(b, smin(b, index, const_i64(size - 1)), const_i64(0))
            source = b.add(source, b.mul(index, const_i64(stride)))
        copy_elements(b, out.ptr, b.mul(item, const_i64(slice_size)), data.ptr, source, data.dtype, slice_size)


def _tuples(graph: Graph, node: Node) -> int:
    return math.prod(graph.input_types(node)[1].shape[:-1])


register_kernel(KernelSpec(("GatherND",), _check, _tuples, _emit))
