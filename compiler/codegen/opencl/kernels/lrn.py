"""LRN (local response normalization across channels): one work item per element."""

from __future__ import annotations

import math

from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, dtype_problem, \
    register_gpu_kernel
from compiler.ir.graph import Graph, Node
from compiler.ops.nn import lrn_window


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    if len(x.shape) < 3:
        return f"LRN needs an input of rank >= 3 (N, C, spatial...), not {x.shape}"
    if node.attrs.get("size", 0) < 1:
        return f"LRN size={node.attrs.get('size')} must be >= 1"
    return dtype_problem(node, x.dtype, ("float32",))


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    attrs, d = ctx.node.attrs, ctx.dialect
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    size = attrs["size"]
    before, after = lrn_window(size)
    plane = math.prod(x.shape[2:])
    alpha, beta, bias = (d.literal(attrs.get(name, default), "float32")
                         for name, default in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    result = f"{d.load('x', 'i', x.dtype)} / pow({bias} + {alpha} / {d.literal(size, 'float32')} * sum, {beta})"
    return [ctx.kernel("lrn.cl.j2", [x, y], ctx.planner.linear(x.size), count=x.size, batch=x.shape[0],
                       channels=x.shape[1], plane=plane, before=before, after=after,
                       load=d.load("x", f"base + k * {plane}", x.dtype), result=d.store_value(result, y.dtype))]


register_gpu_kernel(GpuKernelSpec(("LRN",), _check, _launches))
