"""Trilu: a copy of the input that keeps the upper (or lower) triangle of each matrix, the rest 0.
Element (i, j) of a matrix is kept when j - i >= k (upper) or j - i <= k (lower); k, the optional
second input, may be computed at run time: the kernel reads it."""

from __future__ import annotations

import math

from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, register_gpu_kernel
from compiler.ir.graph import Graph, Node


def _check(graph: Graph, node: Node) -> str | None:
    types = graph.input_types(node)
    if len(types[0].shape) < 2:
        return f"Trilu needs an input of rank >= 2, not {types[0].shape}"
    if len(types) > 1 and types[1] is not None and types[1].dtype != "int64":
        return f"Trilu k must be int64, not {types[1].dtype}"
    return None


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    *batch, rows, columns = x.shape
    params = [x]
    k = "0L"
    if len(ctx.graph.input_types(ctx.node)) > 1 and ctx.input_type(1) is not None:
        params.append(ctx.input(1, "k"))
        k = "k[0]"
    compare = ">=" if ctx.node.attrs.get("upper", 1) else "<="
    zero = ctx.dialect.store_value(ctx.dialect.literal(0, x.dtype), x.dtype)
    value = f"((long)c2 - (long)c1 {compare} {k}) ? x[i] : {zero}"
    return [ctx.kernel("copy.cl.j2", params + [y], ctx.planner.linear(x.size), count=x.size,
                       sizes=[math.prod(batch), rows, columns], target="y[i]", lines=[], value=value)]


register_gpu_kernel(GpuKernelSpec(("Trilu",), _check, _launches))
