"""Reductions over axes (Reduce*), GlobalAveragePool/GlobalMaxPool, Softmax and LogSoftmax.

The input's axes split into kept and reduced ones (adjacent axes of one kind merge); an output
element reduces its elements in one or two passes (LogSumExp and Softmax find the maximum first,
so exp cannot overflow). Short rows run one work item per output; long ones a work group per
output whose lanes combine in local memory (launch.py: lanes). Accumulation is in the compute
type of the input (float for float32 and half, as ONNX Runtime does for float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


from compiler.codegen.opencl.dialect import FLOATS, SIGNED, UNSIGNED, OpenCLDialect, compute_dtype, kind_of
from compiler.codegen.opencl.kernels.registry import (GpuContext, GpuKernelSpec, KernelLaunch, dtype_problem,
                                                      register_gpu_kernel)
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node
from compiler.ops.reduce_axes import axes_input, reduce_axes

INTEGERS = SIGNED | UNSIGNED
Combine = Callable[[OpenCLDialect, str, str, str], str]
"""(dialect, compute dtype, a, b) -> the C expression combining two partial results."""


@dataclass(frozen=True)
class Reducer:
    init: Callable[[OpenCLDialect, str], str]
    step: Combine  # acc, element -> new acc
    combine: Combine  # two partial accumulators -> one
    finish: Callable[[str, int], str] = lambda acc, count: acc
    dtypes: frozenset = FLOATS


def _zero(d: OpenCLDialect, dtype: str) -> str:
    return d.literal(0, dtype)


def _add(d, dtype, a, b):
    return d.wrapping("+", a, b, dtype)


def _multiply(d, dtype, a, b):
    return d.wrapping("*", a, b, dtype)


def _sum_of(term: Callable[[str], str]) -> Combine:
    return lambda d, dtype, acc, v: f"({acc} + {term(v)})"


REDUCERS = {
    "ReduceSum": Reducer(_zero, _add, _add, dtypes=FLOATS | INTEGERS),
    "ReduceMean": Reducer(_zero, _add, _add, lambda acc, count: f"({acc} / {float(count)}f)"),
    "ReduceMax": Reducer(lambda d, t: d.lowest(t), lambda d, t, a, b: d.max(a, b, t), lambda d, t, a, b: d.max(a, b, t),
                         dtypes=FLOATS | INTEGERS | {"bool"}),
    "ReduceMin": Reducer(lambda d, t: d.highest(t), lambda d, t, a, b: d.min(a, b, t), lambda d, t, a, b: d.min(a, b, t),
                         dtypes=FLOATS | INTEGERS | {"bool"}),
    "ReduceProd": Reducer(lambda d, t: d.literal(1, t), _multiply, _multiply, dtypes=FLOATS | INTEGERS),
    "ReduceSumSquare": Reducer(_zero, _sum_of(lambda v: f"{v} * {v}"), _add),
    "ReduceL1": Reducer(_zero, _sum_of(lambda v: f"fabs({v})"), _add),
    "ReduceL2": Reducer(_zero, _sum_of(lambda v: f"{v} * {v}"), _add, lambda acc, count: f"sqrt({acc})"),
    "ReduceLogSum": Reducer(_zero, _add, _add, lambda acc, count: f"log({acc})"),
}
GLOBAL_POOLS = {"GlobalAveragePool": "ReduceMean", "GlobalMaxPool": "ReduceMax"}
SOFTMAX = ("Softmax", "LogSoftmax")
ARG = {"ArgMax": ">", "ArgMin": "<"}
LOG_SUM_EXP = "ReduceLogSumExp"


def reduced_axes(graph: Graph, node: Node) -> list[int]:
    rank = len(graph.input_types(node)[0].shape)
    if node.op_type in GLOBAL_POOLS:
        return list(range(2, rank))
    if node.op_type in SOFTMAX or node.op_type in ARG:
        return [node.attrs.get("axis", -1 if node.op_type in SOFTMAX else 0) % rank]
    return reduce_axes(graph, node)


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    if node.op_type in SOFTMAX or node.op_type == LOG_SUM_EXP:
        handled = FLOATS
    elif node.op_type in ARG:
        handled = FLOATS | INTEGERS
    else:
        handled = REDUCERS[GLOBAL_POOLS.get(node.op_type, node.op_type)].dtypes
    problem = dtype_problem(node, x.dtype, handled)
    if problem:
        return problem
    rank = len(x.shape)
    if (node.op_type in SOFTMAX or node.op_type in ARG) and not -rank <= node.attrs.get("axis", 0) < rank:
        return f"{node.op_type} axis {node.attrs.get('axis')} is out of range for rank {rank}"
    if node.op_type in GLOBAL_POOLS and rank < 3:
        return f"{node.op_type} needs an input of rank >= 3"
    if node.op_type.startswith("Reduce"):
        axes = axes_input(graph, node)
        if axes is None:
            return f"{node.op_type} with axes computed at run time is not compiled by the gpu target (axes must be a constant)"
        if any(not -rank <= int(axis) < rank for axis in axes):
            return f"{node.op_type} axes {axes.tolist()} are out of range for rank {rank}"
    return None


def _merge(shape, strides, axes) -> tuple[list[int], list[int]]:
    """Sizes and strides of `axes` (ascending) with neighbours merged and size-1 axes dropped."""
    sizes, steps = [], []
    previous = None
    for axis in axes:
        if shape[axis] == 1:
            continue
        if previous is not None and previous == axis - 1 and steps[-1] == strides[axis] * shape[axis]:
            sizes[-1] *= shape[axis]
            steps[-1] = strides[axis]
        else:
            sizes.append(shape[axis])
            steps.append(strides[axis])
        previous = axis
    return sizes, steps


def _offset(prefix: str, steps: list[int]) -> str:
    return " + ".join(f"{prefix}{d} * {s}" for d, s in enumerate(steps)) or "0"


@dataclass(frozen=True)
class Pass:
    """One sweep over an output's elements: `name` = init, then `name` = step per element v (or,
    with `position`, take v and remember its index where that condition holds); `combine` merges
    two lanes' partial results (reading scratch[lane] and scratch[lane + width]); `after` runs once
    the pass is done."""

    name: str
    init: str
    step: str = ""
    combine: str = ""
    after: str = ""
    position: str = ""


def _passes(d: OpenCLDialect, op: str, dtype: str, first: str, last: bool) -> tuple[list[Pass], str | None]:
    """The passes over each output's elements (`first` loads its first element) and the expression
    of its result (None: the reducer's finish)."""
    a, b = "scratch[lane]", "scratch[lane + width]"
    if op in ARG:  # the first (or with select_last_index the last) extreme; a NaN wins as in numpy
        better = f"v {ARG[op]}{'=' if last else ''} best"
        if kind_of(dtype) == "float":
            better = f"({better} && !isnan(best)) || (isnan(v) && {'1' if last else '!isnan(best)'})"
        return [Pass("best", first, position=better)], "position"
    if op in SOFTMAX or op == LOG_SUM_EXP:
        # LogSumExp shifts by 0 when the maximum is infinite, which would make exp(v - m) NaN
        peak = Pass("m", d.lowest(dtype), d.float_max("m", "v", dtype), d.float_max(a, b, dtype),
                    after="m = isinf(m) ? 0.0f : m;" if op == LOG_SUM_EXP else "")
        return [peak, Pass("s", "0.0f", "(s + exp(v - m))", f"({a} + {b})")], "(log(s) + m)"
    reducer = REDUCERS[op]
    return [Pass("acc", reducer.init(d, dtype), reducer.step(d, dtype, "acc", "v"), reducer.combine(d, dtype, a, b))], None


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    node, d = ctx.node, ctx.dialect
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    op = GLOBAL_POOLS.get(node.op_type, node.op_type)
    axes = reduced_axes(ctx.graph, node)
    strides = dense_strides(x.shape)
    kept, kept_steps = _merge(x.shape, strides, [a for a in range(len(x.shape)) if a not in axes])
    reduced, reduced_steps = _merge(x.shape, strides, axes)
    count, outputs = math.prod(reduced), math.prod(kept)
    dtype = compute_dtype(x.dtype)
    passes, finish = _passes(d, op, dtype, d.load("x", "base", x.dtype), bool(node.attrs.get("select_last_index", 0)))
    write = None
    if op in SOFTMAX:
        write = d.store_value("exp(v - m) / s" if op == "Softmax" else "v - m - log(s)", y.dtype)
    else:
        finish = d.store_value(finish or REDUCERS[op].finish(passes[0].name, count), y.dtype)
    lanes = 1 if op in ARG else ctx.planner.lanes(outputs, count)
    at = f"base + {_offset('r', reduced_steps)}"
    return [ctx.kernel("reduction.cl.j2", [x, y], ctx.planner.per_output(outputs, lanes), lanes=lanes,
                       acc_type=d.compute_type(x.dtype), outputs=outputs, count=count, kept=kept, reduced=reduced,
                       base=_offset("k", kept_steps), passes=passes, load=d.load("x", at, x.dtype), at=at,
                       write=write, finish=finish if write is None else None)]


register_gpu_kernel(GpuKernelSpec((*REDUCERS, LOG_SUM_EXP, *GLOBAL_POOLS, *SOFTMAX, *ARG), _check, _launches))
