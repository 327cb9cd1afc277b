"""ConvTranspose with 1 or more spatial dims, as a gather over output elements (each output element
sums what its taps read, so no two work items write one element). The geometry comes from
compiler/ops/conv_transpose_geometry.py, as the cpu target's does."""

from __future__ import annotations

import math

from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, dtype_problem, \
    register_gpu_kernel
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node
from compiler.ops.conv_transpose_geometry import conv_transpose_problem, spatial_dims


def _check(graph: Graph, node: Node) -> str | None:
    for value_type in [t for t in graph.input_types(node) if t is not None]:
        problem = dtype_problem(node, value_type.dtype, ("float32",))
        if problem:
            return problem
    return conv_transpose_problem(graph, node)


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    d = ctx.dialect
    x, w, y = ctx.input(0, "x"), ctx.input(1, "w"), ctx.output(0, "y")
    params = [x, w]
    bias = "0.0f"
    if ctx.input_type(2) is not None:
        params.append(ctx.input(2, "b"))
        bias = d.load("b", "p1", "float32")
    dims = spatial_dims(ctx.graph, ctx.node)
    group = ctx.node.attrs.get("group", 1)
    channels, out_group = x.shape[1], w.shape[1]
    in_plane, taps = math.prod(x.shape[2:]), math.prod(w.shape[2:])
    x_offset = " + ".join(f"i{a} * {s}" for a, s in enumerate(dense_strides(x.shape[2:])))
    w_offset = " + ".join(f"t{a} * {s}" for a, s in enumerate(dense_strides(w.shape[2:])))
    return [ctx.kernel("conv_transpose.cl.j2", params + [y], ctx.planner.linear(y.size), count=y.size,
                       batch=x.shape[0], out_channels=y.shape[1], dims=dims, channels=channels,
                       in_group=channels // group, out_group=out_group, in_plane=in_plane, taps=taps, bias=bias,
                       x_offset=x_offset, w_offset=w_offset, x_load=d.load("x", f"x_at + c * {in_plane}", x.dtype),
                       w_load=d.load("w", f"w_at + c * {out_group * taps}", w.dtype),
                       result=d.store_value("acc", y.dtype))]


register_gpu_kernel(GpuKernelSpec(("ConvTranspose",), _check, _launches))
