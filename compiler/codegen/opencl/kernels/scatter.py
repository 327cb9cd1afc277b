"""ScatterElements (and the deprecated Scatter) and ScatterND.

One work item per output element starts from the data element and folds in, in the order the
reference applies them, every update whose index lands on it (`reduction` none/add/mul/max/min).
Gathering instead of scattering needs no atomics and keeps duplicates deterministic: the last
update wins for "none", as in the reference's sequential loop. A negative index counts from the
end of its axis.
"""

from __future__ import annotations

import math

from compiler.codegen.opencl.dialect import compute_dtype
from compiler.codegen.opencl.expressions import NUMBERS
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, dtype_problem, \
    register_gpu_kernel
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node

REDUCTIONS = ("none", "add", "mul", "max", "min")


def _check(graph: Graph, node: Node) -> str | None:
    data, indices = graph.input_types(node)[:2]
    problem = dtype_problem(node, data.dtype, NUMBERS | {"bool"} if node.attrs.get("reduction", "none") == "none"
                            else NUMBERS)
    if problem:
        return problem
    if indices.dtype not in ("int32", "int64"):
        return f"{node.op_type} indices must be int32 or int64, not {indices.dtype}"
    if node.attrs.get("reduction", "none") not in REDUCTIONS:
        return f"{node.op_type} reduction {node.attrs['reduction']!r} is not one of {', '.join(REDUCTIONS)}"
    if node.op_type != "ScatterND" and not -len(data.shape) <= node.attrs.get("axis", 0) < len(data.shape):
        return f"{node.op_type} axis {node.attrs.get('axis')} is out of range for rank {len(data.shape)}"
    return None


def _fold(ctx: GpuContext, dtype: str, update: str) -> str:
    """The statement folding `update` into the running value `acc`."""
    reduction, d = ctx.node.attrs.get("reduction", "none"), ctx.dialect
    if reduction == "none":
        return f"acc = {update};"
    if reduction in ("max", "min"):
        return f"acc = {getattr(d, reduction)('acc', update, dtype)};"
    return f"acc = {d.wrapping('+' if reduction == 'add' else '*', 'acc', update, dtype)};"


def _elements(ctx: GpuContext, dtype: str) -> list[str]:
    """Updates in the output element's line along `axis` whose index equals its coordinate there."""
    data_shape, updates_shape = ctx.input_type(0).shape, ctx.input_type(2).shape
    rank = len(data_shape)
    axis = ctx.node.attrs.get("axis", 0) % rank
    inside = " && ".join(f"c{d} < {updates_shape[d]}" for d in range(rank) if d != axis) or "1"
    strides = dense_strides(updates_shape)
    at = " + ".join([f"c{d} * {strides[d]}" for d in range(rank) if d != axis] + [f"t * {strides[axis]}"])
    load = ctx.dialect.load
    return [f"if ({inside}) for (long t = 0; t < {updates_shape[axis]}; ++t) {{",
            f"  long at = {at}; long k = {load('indices', 'at', ctx.input_type(1).dtype)};",
            f"  if (k < 0) k += {data_shape[axis]};",
            f"  if (k == c{axis}) {{ {_fold(ctx, dtype, load('updates', 'at', ctx.input_type(2).dtype))} }}",
            "}"]


def _nd(ctx: GpuContext, dtype: str) -> list[str]:
    """Index tuples (the last dim of indices, k long) naming the output element's first k coordinates."""
    data_shape, indices_shape = ctx.input_type(0).shape, ctx.input_type(1).shape
    k = indices_shape[-1]
    tuples, slice_size = math.prod(indices_shape[:-1]), math.prod(data_shape[k:])
    inner = " + ".join(f"c{d} * {s}" for d, s in zip(range(k, len(data_shape)), dense_strides(data_shape[k:])))
    load = ctx.dialect.load
    matches = []
    for d in range(k):
        index = load("indices", f"j * {k} + {d}", ctx.input_type(1).dtype)
        matches.append(f"(({index}) < 0 ? ({index}) + {data_shape[d]} : ({index})) == c{d}")
    update = load("updates", f"j * {slice_size} + {inner or '0'}", ctx.input_type(2).dtype)
    return [f"for (long j = 0; j < {tuples}; ++j) {{",
            f"  if ({' && '.join(matches) or '1'}) {{ {_fold(ctx, dtype, update)} }}",
            "}"]


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    data, indices, updates, y = ctx.input(0, "data"), ctx.input(1, "indices"), ctx.input(2, "updates"), ctx.output()
    dtype = compute_dtype(data.dtype)
    lines = [f"{ctx.dialect.compute_type(data.dtype)} acc = {ctx.dialect.load('data', 'i', data.dtype)};"]
    lines += _nd(ctx, dtype) if ctx.node.op_type == "ScatterND" else _elements(ctx, dtype)
    return [ctx.kernel("copy.cl.j2", [data, indices, updates, y], ctx.planner.linear(y.size), count=y.size,
                       sizes=list(y.shape), target="y[i]", lines=lines, value=ctx.dialect.store_value("acc", y.dtype))]


register_gpu_kernel(GpuKernelSpec(("ScatterElements", "Scatter", "ScatterND"), _check, _launches))
