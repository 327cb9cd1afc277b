"""Elementwise ops (unary, binary, variadic, comparisons, Where, inference BatchNormalization,
QuantizeLinear/DequantizeLinear) with numpy broadcasting: one work item per output element, the
body from the expression renderer.

Output dims are coalesced first (runs of dims every operand spans or broadcasts alike merge), so
an operand of the output's shape reads at the work item's own index and a broadcast one needs a
div/mod walk over a few merged dims only. BatchNormalization's per-channel operands are seen as
(C, 1, ..., 1), which makes it a broadcasting expression too; a quantization scale and zero point
are seen as compiler/ops/quantize_layout.py lines them up with x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from compiler.codegen.broadcast_dims import broadcast_strides, coalesce, same_shape_input
from compiler.codegen.opencl.dialect import SINGLE, compute_dtype
from compiler.codegen.opencl.expressions import OPS, QUANTIZED, op_problem, render, result_dtype
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, Tensor, \
    register_gpu_kernel
from compiler.ir.graph import Graph, Node
from compiler.ops.onnx_bridge import dtype_from_onnx
from compiler.ops.quantize_layout import layout_problem, quantize_layout

QUANTIZE_OPS = ("QuantizeLinear", "DequantizeLinear")


def _quantize_problem(graph: Graph, node: Node) -> str | None:
    x, scale = graph.input_types(node)[:2]
    if scale.dtype not in SINGLE:
        return f"{node.op_type} with a {scale.dtype} scale is not compiled by the gpu target (float32 only)"
    if node.op_type == "QuantizeLinear":
        out = node.outputs[0].dtype
        if out not in QUANTIZED:
            return f"QuantizeLinear to {out} is not compiled by the gpu target (it handles {', '.join(QUANTIZED)})"
        precision = node.attrs.get("precision", 0)
        if precision and dtype_from_onnx(precision) != "float32":
            return f"QuantizeLinear precision {dtype_from_onnx(precision)} is not compiled by the gpu target"
    return layout_problem(graph, node)


def _check(graph: Graph, node: Node) -> str | None:
    types = graph.input_types(node)
    if node.op_type in QUANTIZE_OPS:
        problem = _quantize_problem(graph, node)
        if problem:
            return problem
    if node.op_type == "BatchNormalization":
        if len(node.outputs) > 1 or node.attrs.get("training_mode", 0):
            return "BatchNormalization in training mode is not compiled by the gpu target (inference only)"
        if len(types[0].shape) < 2 or any(t.dtype != types[0].dtype for t in types[1:]):
            return "BatchNormalization needs an input of rank >= 2 and statistics of the input's dtype"
    return op_problem(node, [None if t is None else t.dtype for t in types])


def _operand_shapes(ctx: GpuContext) -> tuple[tuple, list]:
    """The output's shape and the operands' (None where absent) as they broadcast against it."""
    shapes = [None if t is None else t.shape for t in ctx.graph.input_types(ctx.node)]
    if ctx.node.op_type == "BatchNormalization":
        rank = len(shapes[0])
        shapes = [shapes[0]] + [(s[0],) + (1,) * (rank - 2) for s in shapes[1:]]
    if ctx.node.op_type in QUANTIZE_OPS:
        view, params = quantize_layout(ctx.graph, ctx.node)
        views = iter(params)
        return view, [view] + [None if shape is None else next(views) for shape in shapes[1:]]
    return ctx.node.outputs[0].shape, shapes


@dataclass
class Operands:
    """The loaded operands of a broadcasting kernel: its parameters, the load of each present operand
    into v<index>, identifiers and storage dtypes by input index (None where absent), and the
    coalesced output dims the kernel unravels (none when every operand reads at the item's index)."""

    params: list[Tensor]
    values: list[dict]
    names: list
    dtypes: list
    coords: list[int]


def load_operands(ctx: GpuContext, out_shape, shapes: list) -> Operands:
    """Inputs of shapes `shapes` (None where absent) as they broadcast against `out_shape`."""
    present = [index for index, shape in enumerate(shapes) if shape is not None]
    out_dims, in_dims = coalesce(out_shape, [shapes[index] for index in present])
    loaded = Operands([], [], [None] * len(shapes), [None] * len(shapes), [])
    for index, dims in zip(present, in_dims):
        tensor = ctx.input(index)
        loaded.params.append(tensor)
        if dims == out_dims:
            offset = "i"
        else:
            loaded.coords = out_dims
            terms = [f"c{axis} * {stride}" for axis, stride in enumerate(broadcast_strides(dims)) if stride]
            offset = " + ".join(terms) or "0"
        loaded.names[index], loaded.dtypes[index] = f"v{index}", tensor.dtype
        loaded.values.append({"name": f"v{index}", "ctype": ctx.dialect.compute_type(tensor.dtype),
                              "load": ctx.dialect.load(tensor.name, offset, tensor.dtype)})
    return loaded


def broadcasting_kernel(ctx: GpuContext, operands: Operands, result: str, lines: Sequence[str] = ()) -> KernelLaunch:
    """y[i] = `result` (a storable expression) after `lines`, over the loaded operands."""
    out = ctx.output()
    launch = ctx.planner.linear(out.size).over_entries(out.size)
    return ctx.kernel("elementwise.cl.j2", operands.params + [out], launch, count=out.size,
                      coords=operands.coords, values=operands.values, lines=list(lines), result=result)


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    out_shape, shapes = _operand_shapes(ctx)
    operands = load_operands(ctx, out_shape, shapes)
    expression = render(ctx.dialect, ctx.node, operands.names, operands.dtypes)
    produced = compute_dtype(result_dtype(ctx.node, [d for d in operands.dtypes if d is not None]))
    return [broadcasting_kernel(ctx, operands, ctx.dialect.convert(expression, produced, ctx.output().dtype))]


register_gpu_kernel(GpuKernelSpec(tuple(OPS), _check, _launches, in_place=same_shape_input))
