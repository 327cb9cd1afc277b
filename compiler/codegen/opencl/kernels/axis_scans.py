"""Per-axis scans and selections: CumSum, CumProd, Hardmax, LpNormalization.

The input is seen as (outer, n, inner) around the chosen axis (Hardmax before opset 13: the axes
from `axis` on, flattened); one work item per output element walks its axis line in a fixed order
(backwards for a reverse scan, as the cpu target does), so results do not depend on the NDRange.
A line is walked once per element of it, which is cheap for the short lines these ops see.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.codegen.opencl.dialect import FLOATS, SIGNED, UNSIGNED, compute_dtype
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, dtype_problem, \
    register_gpu_kernel
from compiler.ir.graph import Graph, Node

SCANS = {"CumSum": (0, "+"), "CumProd": (1, "*")}  # identity, combining operator


def _shape(graph: Graph, node: Node) -> tuple[int, ...]:
    return graph.input_types(node)[0].shape


def _scan_axis(graph: Graph, node: Node) -> int | str:
    """CumSum/CumProd's axis (a constant input), or why it cannot be used."""
    values = graph.input_values(node)
    axis = graph.constant_value(values[1]) if len(values) > 1 and values[1] is not None else None
    if axis is None:
        return f"{node.op_type} with an axis computed at run time is not compiled by the gpu target (it must be a constant)"
    if np.size(axis) != 1:
        return f"{node.op_type} axis must hold one value, not shape {np.shape(axis)}"
    return int(np.ravel(axis)[0])


def _hardmax_flattens(node: Node) -> bool:
    """Before opset 13 Hardmax flattened the input to 2-d at `axis` and selected over the second dim."""
    return (node.version or 13) < 13


def _axis(graph: Graph, node: Node) -> int | str:
    if node.op_type in SCANS:
        return _scan_axis(graph, node)
    if node.op_type == "Hardmax":
        return node.attrs.get("axis", 1 if _hardmax_flattens(node) else -1)
    return node.attrs.get("axis", -1)


def _check(graph: Graph, node: Node) -> str | None:
    handled = FLOATS | SIGNED | UNSIGNED if node.op_type in SCANS else FLOATS
    problem = dtype_problem(node, graph.input_types(node)[0].dtype, handled)
    if problem:
        return problem
    axis, rank = _axis(graph, node), len(_shape(graph, node))
    if isinstance(axis, str):
        return axis
    if not -rank <= axis < rank:
        return f"{node.op_type} axis {axis} is out of range for rank {rank}"
    if node.op_type == "LpNormalization" and node.attrs.get("p", 2) not in (1, 2):
        return f"LpNormalization with p={node.attrs['p']} is undefined (ONNX allows p = 1 or 2)"
    return None


def _line_view(graph: Graph, node: Node) -> tuple[int, int, int]:
    """(outer, n, inner): the input around its axis line."""
    shape = _shape(graph, node)
    axis = _axis(graph, node) % len(shape)
    end = len(shape) if node.op_type == "Hardmax" and _hardmax_flattens(node) else axis + 1
    return math.prod(shape[:axis]), math.prod(shape[axis:end]), math.prod(shape[end:])


def _scan(ctx: GpuContext, ctype: str, dtype: str, n: int, load) -> tuple[list[str], str]:
    """The running value: the elements before (exclusive) or up to this one, from the line's end when reversed."""
    identity, op = SCANS[ctx.node.op_type]
    attrs, d = ctx.node.attrs, ctx.dialect
    exclusive = "" if attrs.get("exclusive", 0) else "="
    if attrs.get("reverse", 0):
        loop = f"for (long t = {n} - 1; t {'>' if exclusive == '' else '>='} c1; --t)"
    else:
        loop = f"for (long t = 0; t <{exclusive} c1; ++t)"
    lines = [f"{ctype} acc = {d.literal(identity, dtype)};",
             f"{loop} acc = {d.wrapping(op, 'acc', load('t'), dtype)};"]
    return lines, "acc"


def _hardmax(ctx: GpuContext, ctype: str, dtype: str, n: int, load) -> tuple[list[str], str]:
    """1 at the first maximum of the line (the first NaN, if any, as numpy's argmax), 0 elsewhere."""
    d = ctx.dialect
    lines = [f"{ctype} best = {d.lowest(dtype)}; long position = 0;",
             f"for (long t = 0; t < {n}; ++t) {{ const {ctype} v = {load('t')}; "
             "if (v > best || (isnan(v) && !isnan(best))) { best = v; position = t; } }"]
    return lines, f"(position == c1 ? {d.literal(1, dtype)} : {d.literal(0, dtype)})"


def _lp_normalization(ctx: GpuContext, ctype: str, dtype: str, n: int, load) -> tuple[list[str], str]:
    """x / (sum |x| or sqrt(sum x²)) along the line; a zero norm gives 0, as in the ONNX tests."""
    d, squares = ctx.dialect, ctx.node.attrs.get("p", 2) == 2
    zero = d.literal(0, dtype)
    term = "v * v" if squares else "fabs(v)"
    lines = [f"{ctype} norm = {zero};",
             f"for (long t = 0; t < {n}; ++t) {{ const {ctype} v = {load('t')}; norm += {term}; }}"]
    if squares:
        lines.append("norm = sqrt(norm);")
    return lines, f"(norm == {zero} ? {zero} : {load('c1')} / norm)"


BODIES = {"CumSum": _scan, "CumProd": _scan, "Hardmax": _hardmax, "LpNormalization": _lp_normalization}


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    outer, n, inner = _line_view(ctx.graph, ctx.node)
    dtype = compute_dtype(x.dtype)

    def load(t: str) -> str:
        return ctx.dialect.load("x", f"i + ({t} - c1) * {inner}", x.dtype)

    lines, value = BODIES[ctx.node.op_type](ctx, ctx.dialect.compute_type(x.dtype), dtype, n, load)
    return [ctx.kernel("copy.cl.j2", [x, y], ctx.planner.linear(y.size), count=y.size, sizes=[outer, n, inner],
                       target="y[i]", lines=lines, value=ctx.dialect.store_value(value, y.dtype))]


register_gpu_kernel(GpuKernelSpec(tuple(BODIES), _check, _launches))
