"""Elementwise ops (unary, binary, variadic, comparisons, Where, inference BatchNormalization) with
numpy broadcasting: one work item per output element, the body from the expression renderer.

Output dims are coalesced first (runs of dims every operand spans or broadcasts alike merge), so
an operand of the output's shape reads at the work item's own index and a broadcast one needs a
div/mod walk over a few merged dims only. BatchNormalization's per-channel operands are seen as
(C, 1, ..., 1), which makes it a broadcasting expression too.
"""

from __future__ import annotations

from compiler.codegen.llvm.kernels.broadcast import coalesce
from compiler.codegen.opencl.dialect import compute_dtype
from compiler.codegen.opencl.expressions import OPS, op_problem, render, result_dtype
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, register_gpu_kernel
from compiler.ir.graph import Graph, Node


def _check(graph: Graph, node: Node) -> str | None:
    types = graph.input_types(node)
    if node.op_type == "BatchNormalization":
        if len(node.outputs) > 1 or node.attrs.get("training_mode", 0):
            return "BatchNormalization in training mode is not compiled by the gpu target (inference only)"
        if len(types[0].shape) < 2 or any(t.dtype != types[0].dtype for t in types[1:]):
            return "BatchNormalization needs an input of rank >= 2 and statistics of the input's dtype"
    return op_problem(node, [None if t is None else t.dtype for t in types])


def _operand_shapes(ctx: GpuContext) -> list:
    """Operand shapes as they broadcast against the output (None where absent)."""
    shapes = [None if t is None else t.shape for t in ctx.graph.input_types(ctx.node)]
    if ctx.node.op_type == "BatchNormalization":
        rank = len(shapes[0])
        shapes = [shapes[0]] + [(s[0],) + (1,) * (rank - 2) for s in shapes[1:]]
    return shapes


def _broadcast_strides(dims: list[int]) -> list[int]:
    """Element strides of an operand walking the coalesced output dims (0 where it broadcasts)."""
    strides, step = [], 1
    for dim in reversed(dims):
        strides.append(step if dim != 1 else 0)
        step *= dim
    return list(reversed(strides))


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    out = ctx.output()
    shapes = _operand_shapes(ctx)
    present = [index for index, shape in enumerate(shapes) if shape is not None]
    out_dims, in_dims = coalesce(out.shape, [shapes[index] for index in present])
    params, values, dtypes, names = [], [], [None] * len(shapes), [None] * len(shapes)
    broadcasting = False
    for index, dims in zip(present, in_dims):
        tensor = ctx.input(index)
        params.append(tensor)
        if dims == out_dims:
            offset = "i"
        else:
            broadcasting = True
            terms = [f"c{axis} * {stride}" for axis, stride in enumerate(_broadcast_strides(dims)) if stride]
            offset = " + ".join(terms) or "0"
        names[index], dtypes[index] = f"v{index}", tensor.dtype
        values.append({"name": f"v{index}", "ctype": ctx.dialect.compute_type(tensor.dtype),
                       "load": ctx.dialect.load(tensor.name, offset, tensor.dtype)})
    expression = render(ctx.dialect, ctx.node, names, dtypes)
    produced = compute_dtype(result_dtype(ctx.node, [d for d in dtypes if d is not None]))
    result = ctx.dialect.convert(expression, produced, out.dtype)
    return [ctx.kernel("elementwise.cl.j2", params + [out], ctx.planner.linear(out.size), count=out.size,
                       coords=out_dims if broadcasting else [], values=values, result=result)]


def same_shape_input(graph: Graph, node: Node) -> int | None:
    """The first input of the output's very type: element i is read only to write element i."""
    for index, value_type in enumerate(graph.input_types(node)):
        if value_type is not None and value_type == node.outputs[0]:
            return index
    return None


register_gpu_kernel(GpuKernelSpec(tuple(OPS), _check, _launches, in_place=same_shape_input))
