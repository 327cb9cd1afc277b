"""MaxUnpool: every input element goes to the output position its index names, the rest is zero.

Indices are flat positions in the tensor MaxPool read (the inferred shape, (in - 1) * stride
- pads + kernel per spatial dim); a larger output_shape keeps that tensor in its leading corner,
as onnx.reference does. A work item is one (image, channel) plane of the output: it zeroes the
plane, then writes the plane's input elements in order (a repeated index keeps the last one).
An index outside the plane MaxPool would give it (other planes, negative, past the end) is
skipped, so no work item writes another's plane and results are the same for any thread count.
"""

from __future__ import annotations

import math

from compiler.codegen.llvm.irhelpers import const_i64, element_pointer, for_range, load, store
from compiler.codegen.llvm.kernels.linear_algebra import linear, unravel, zero_fill
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node


def _pooled_size(node: Node, size_in) -> tuple[int, ...]:
    """The spatial shape MaxPool read, which the indices count in."""
    rank = len(size_in)
    kernel = node.attrs["kernel_shape"]
    strides = node.attrs.get("strides", [1] * rank)
    pads = node.attrs.get("pads", [0] * 2 * rank)
    return tuple((size - 1) * stride - pads[axis] - pads[rank + axis] + kernel[axis]
                 for axis, (size, stride) in enumerate(zip(size_in, strides)))


def _check(graph: Graph, node: Node) -> str | None:
    x_type, indices_type = graph.input_types(node)[:2]
    rank = len(x_type.shape) - 2
    if rank < 1:
        return f"MaxUnpool needs an input of rank >= 3, not {x_type.shape}"
    if indices_type.dtype != "int64" or indices_type.shape != x_type.shape:
        return f"MaxUnpool needs int64 indices of the input's shape {x_type.shape}, not {indices_type}"
    attrs = node.attrs
    if len(attrs.get("kernel_shape", [])) != rank or len(attrs.get("strides", [1] * rank)) != rank \
            or len(attrs.get("pads", [0] * 2 * rank)) != 2 * rank:
        return f"MaxUnpool needs kernel_shape and strides with {rank} values and pads with {2 * rank}"
    pooled, size_out = _pooled_size(node, x_type.shape[2:]), node.outputs[0].shape[2:]
    if any(p < 1 or p > o for p, o in zip(pooled, size_out)):
        return f"MaxUnpool output shape {node.outputs[0].shape} does not hold the pooled input's {list(pooled)}"
    return None


def _emit(ctx: KernelContext) -> None:
    b, x, indices, y = ctx.builder, ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    pooled, size_out = _pooled_size(ctx.node, x.shape[2:]), y.shape[2:]
    pooled_plane, in_plane, out_plane = math.prod(pooled), math.prod(x.shape[2:]), math.prod(size_out)
    out_strides = y.strides[2:]
    with for_range(b, ctx.begin, ctx.end, name="plane") as plane:
        out_start = b.mul(plane, const_i64(out_plane))
        zero_fill(b, element_pointer(b, y.ptr, y.dtype, out_start), y.dtype, out_plane)
        in_start, first_index = b.mul(plane, const_i64(in_plane)), b.mul(plane, const_i64(pooled_plane))
        with for_range(b, 0, in_plane, name="element") as element:
            source = b.add(in_start, element)
            position = b.sub(load(b, indices.ptr, indices.dtype, source), first_index)
            with b.if_then(b.icmp_unsigned("<", position, const_i64(pooled_plane))):  # negatives wrap
                if tuple(pooled) != tuple(size_out):
                    position = linear(b, unravel(b, position, pooled), out_strides)
                store(b, load(b, x.ptr, x.dtype, source), y.ptr, y.dtype, b.add(out_start, position))


register_kernel(KernelSpec(("MaxUnpool",), _check, lambda graph, node: math.prod(node.outputs[0].shape[:2]), _emit))
