"""TopK: one work item per output element, the r-th of its line in order (largest or smallest first,
ties to the lower index, as ONNX asks). The item ranks each element of the line against the others
until it finds the one of rank r: quadratic in the axis length, fine for the short axes TopK sees."""

from __future__ import annotations

from compiler.codegen.opencl.dialect import FLOATS, SIGNED, UNSIGNED
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, dtype_problem, \
    register_gpu_kernel
from compiler.ir.graph import Graph, Node


def _check(graph: Graph, node: Node) -> str | None:
    return dtype_problem(node, graph.input_types(node)[0].dtype, FLOATS | SIGNED | UNSIGNED)


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    x, y, positions = ctx.input(0, "x"), ctx.output(0, "y"), ctx.output(1, "positions")
    axis = ctx.node.attrs.get("axis", -1) % len(x.shape)
    length, stride = x.shape[axis], x.strides[axis]
    before = ">" if ctx.node.attrs.get("largest", 1) else "<"
    base = " + ".join(f"(long)c{d} * {s}" for d, s in enumerate(x.strides) if d != axis) or "0"
    load = ctx.dialect.load
    lines = [f"const long base = {base};", "long found = 0;",
             f"for (long q = 0; q < {length}; ++q) {{",
             f"  const {ctx.dialect.compute_type(x.dtype)} v = {load('x', f'base + q * {stride}', x.dtype)};",
             "  long rank = 0;",
             f"  for (long p = 0; p < {length}; ++p) {{",
             f"    const {ctx.dialect.compute_type(x.dtype)} u = {load('x', f'base + p * {stride}', x.dtype)};",
             f"    rank += (u {before} v) || (u == v && p < q);",
             "  }",
             f"  if (rank == (long)c{axis}) {{ found = q; break; }}",
             "}",
             "positions[i] = found;"]
    return [ctx.kernel("copy.cl.j2", [x, y, positions], ctx.planner.linear(y.size), count=y.size,
                       sizes=list(y.shape), target="y[i]", lines=lines, value=f"x[base + found * {stride}]")]


register_gpu_kernel(GpuKernelSpec(("TopK",), _check, _launches))
