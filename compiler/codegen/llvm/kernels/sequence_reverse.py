"""ReverseSequence: each batch entry's first sequence_lens[b] time steps in reverse order.

A work item is one (dim 0, dim 1) pair, batch and time in either order: it copies the inner
block of one time step, read from the mirrored step when it lies inside the sequence. Lengths
outside [0, time steps] are clamped into it, so a bad length never reads outside the input.
"""

from __future__ import annotations

import math

from compiler.codegen.llvm.irhelpers import const_i64, convert, for_range, load
from compiler.codegen.llvm.kernels.gather_nd import INDEX_DTYPES, copy_elements
from compiler.codegen.llvm.kernels.linear_algebra import smax, smin
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node


def _check(graph: Graph, node: Node) -> str | None:
    x, lengths = graph.input_types(node)
    batch_axis, time_axis = node.attrs.get("batch_axis", 1), node.attrs.get("time_axis", 0)
    if {batch_axis, time_axis} != {0, 1} or len(x.shape) < 2:
        return (f"ReverseSequence batch_axis={batch_axis}, time_axis={time_axis} on rank {len(x.shape)}: "
                "the axes must be 0 and 1 of a tensor of rank >= 2")
    if lengths.dtype not in INDEX_DTYPES or lengths.shape != (x.shape[batch_axis],):
        return f"ReverseSequence sequence_lens must be {x.shape[batch_axis]} int64 values, not {lengths}"
    return None


def _emit(ctx: KernelContext) -> None:
    """y[b, t] = x[b, len_b - 1 - t] for t < len_b, else x[b, t] (one inner block per item)."""
    b, (x, lengths), y = ctx.builder, ctx.inputs, ctx.outputs[0]
    time_first = ctx.node.attrs.get("time_axis", 0) == 0
    steps, inner = x.shape[0 if time_first else 1], math.prod(x.shape[2:])
    with for_range(b, ctx.begin, ctx.end, name="item") as item:
        first, second = b.udiv(item, const_i64(x.shape[1])), b.urem(item, const_i64(x.shape[1]))
        batch, time = (second, first) if time_first else (first, second)
        length = convert(b, load(b, lengths.ptr, lengths.dtype, batch), lengths.dtype, "int64")
        length = smax(b, smin(b, length, const_i64(steps)), const_i64(0))
        mirrored = b.sub(b.sub(length, const_i64(1)), time)
        source_time = b.select(b.icmp_signed("<", time, length), mirrored, time)
        source = b.add(b.mul(source_time, const_i64(x.shape[1])), batch) if time_first else \
            b.add(b.mul(batch, const_i64(x.shape[1])), source_time)
        copy_elements(b, y.ptr, b.mul(item, const_i64(inner)), x.ptr, b.mul(source, const_i64(inner)), x.dtype, inner)


register_kernel(KernelSpec(("ReverseSequence",), _check,
                           lambda graph, node: math.prod(graph.input_types(node)[0].shape[:2]), _emit))
