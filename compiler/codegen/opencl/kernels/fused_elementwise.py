"""kiln::FusedElementwise: a whole elementwise expression per element in one broadcasting kernel;
each step rendered by the expression renderer as its own kernel would compute it
(compiler/codegen/opencl/steps.py), so fusing changes no result, only the memory traffic."""

from __future__ import annotations

from compiler.codegen.broadcast_dims import same_shape_input
from compiler.codegen.opencl.dialect import compute_dtype
from compiler.codegen.opencl.kernels.elementwise import broadcasting_kernel, load_operands
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, register_gpu_kernel
from compiler.codegen.opencl.steps import render_steps, steps_problem
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.fused_elementwise import OP_TYPE, steps_of, value_types


def _dtypes(graph: Graph, node: Node) -> list:
    return [None if t is None else t.dtype for t in value_types(node, graph.input_types(node))]


def _check(graph: Graph, node: Node) -> str | None:
    return steps_problem(node, steps_of(node), _dtypes(graph, node))


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    out = ctx.output()
    operands = load_operands(ctx, out.shape, [t.shape for t in ctx.graph.input_types(ctx.node)])
    dtypes = _dtypes(ctx.graph, ctx.node)
    lines, last = render_steps(ctx.dialect, steps_of(ctx.node), operands.names, dtypes, "s")
    return [broadcasting_kernel(ctx, operands, ctx.dialect.convert(last, compute_dtype(out.dtype), out.dtype), lines)]


register_gpu_kernel(GpuKernelSpec((f"{KILN_DOMAIN}::{OP_TYPE}",), _check, _launches, in_place=same_shape_input))
