"""Reductions over axes (Reduce*) and arg-reductions (ArgMax, ArgMin) on the kept × reduced loop nest.

Every output element is accumulated in the input dtype (as ONNX Runtime does for float32) by
exactly one work item, in an order fixed by the compiled code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I64, element_type, kind_of, load, store
from compiler.codegen.llvm.kernels.axis_loops import (REASSOCIATE, AxisSplit, Cell, Scratch, Segment, emit_segments,
                                                      split_axes)
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic, select_max, select_min
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.codegen.llvm.kernels.vector_math import exp, log
from compiler.ir.graph import Graph, Node
from compiler.ops.reduce_axes import axes_input, reduce_axes

FLOATS = ("float32", "float64")
INTEGERS = ("int32", "int64")
ALL_INTEGERS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
ORDERED = ALL_INTEGERS + ("bool",)  # what max/min also take


def dtype_problem(node: Node, dtype: str, handled: tuple[str, ...]) -> str | None:
    """Why `node` cannot run on `dtype`, or None when `dtype` is among those handled."""
    if dtype in handled:
        return None
    return f"{node.op_type} on {dtype} is not compiled by the cpu target (it handles {', '.join(handled)})"


def lowest(value_type: ir.Type, kind: str) -> ir.Constant:
    """The identity of max: -inf, the smallest signed integer, or 0 (unsigned, bool)."""
    if kind == "float":
        return float_constant(value_type, float("-inf"))
    return ir.Constant(value_type, -(1 << (value_type.width - 1)) if kind == "signed" else 0)


def highest(value_type: ir.Type, kind: str) -> ir.Constant:
    """The identity of min: inf, the largest integer of the kind, or true (bool)."""
    if kind == "float":
        return float_constant(value_type, float("inf"))
    largest = {"signed": (1 << (value_type.width - 1)) - 1, "unsigned": (1 << value_type.width) - 1, "bool": 1}
    return ir.Constant(value_type, largest[kind])


def _zero(value_type, kind):
    return ir.Constant(value_type, 0.0 if kind == "float" else 0)


def _one(value_type, kind):
    return ir.Constant(value_type, 1.0 if kind == "float" else 1)


def _add(b, x, y, kind):
    return b.fadd(x, y, flags=REASSOCIATE) if kind == "float" else b.add(x, y)


def _mul(b, x, y, kind):
    return b.fmul(x, y, flags=REASSOCIATE) if kind == "float" else b.mul(x, y)


@dataclass(frozen=True)
class Reducer:
    """One-pass reduction: acc = init, then acc = step(acc, x) per element, then finish(acc, element count)."""

    init: Callable[[ir.Type, str], ir.Constant]
    step: Callable[[ir.IRBuilder, ir.Value, ir.Value, str], ir.Value]
    finish: Callable[[ir.IRBuilder, ir.Value, int], ir.Value] = lambda b, acc, count: acc
    integers: tuple[str, ...] = ()  # the integer (and bool) dtypes it also takes


REDUCERS: dict[str, Reducer] = {
    "ReduceSum": Reducer(_zero, _add, integers=ALL_INTEGERS),
    "ReduceMean": Reducer(_zero, _add, lambda b, acc, count: b.fdiv(acc, float_constant(acc.type, count))),
    "ReduceMax": Reducer(lowest, lambda b, acc, x, kind: select_max(b, acc, x, kind), integers=ORDERED),
    "ReduceMin": Reducer(highest, lambda b, acc, x, kind: select_min(b, acc, x, kind), integers=ORDERED),
    "ReduceProd": Reducer(_one, _mul, integers=ALL_INTEGERS),
    "ReduceSumSquare": Reducer(_zero, lambda b, acc, x, kind: _add(b, acc, b.fmul(x, x), kind)),
    "ReduceL1": Reducer(_zero, lambda b, acc, x, kind: _add(b, acc, intrinsic(b, "fabs", x), kind)),
    "ReduceL2": Reducer(_zero, lambda b, acc, x, kind: _add(b, acc, b.fmul(x, x), kind),
                        lambda b, acc, count: intrinsic(b, "sqrt", acc)),
    "ReduceLogSum": Reducer(_zero, _add, lambda b, acc, count: log(b, acc)),
}
LOG_SUM_EXP = "ReduceLogSumExp"


def emit_reduction(ctx: KernelContext, reducer: Reducer, split: AxisSplit) -> None:
    """output[kept] = reducer over the reduced set of input 0 (also used by the global pools)."""
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    value_type, kind = element_type(x.dtype), kind_of(x.dtype)
    acc = Scratch(b, split, value_type)

    def visit(cell: Cell) -> None:
        acc.store(cell, reducer.step(b, acc.load(cell), load(b, x.ptr, x.dtype, cell.offset), kind))

    def finish(cell: Cell) -> None:
        store(b, reducer.finish(b, acc.load(cell), split.reduced_count), y.ptr, y.dtype, cell.kept)

    def item(segment: Segment) -> None:
        segment.columns(lambda cell: acc.store(cell, reducer.init(value_type, kind)))
        segment.sweep(visit)
        segment.columns(finish)

    emit_segments(b, split, ctx.begin, ctx.end, item)


def _emit_log_sum_exp(ctx: KernelContext, split: AxisSplit) -> None:
    """log(sum(exp(x - m))) + m with m the largest finite-or-(-inf) max, so exp cannot overflow."""
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    value_type = element_type(x.dtype)
    zero = float_constant(value_type, 0.0)
    shift, total = Scratch(b, split, value_type), Scratch(b, split, value_type)

    def start(cell: Cell) -> None:
        shift.store(cell, lowest(value_type, "float"))
        total.store(cell, zero)

    def finite_shift(cell: Cell) -> None:
        peak = shift.load(cell)
        infinite = b.fcmp_ordered("==", intrinsic(b, "fabs", peak), float_constant(value_type, float("inf")))
        shift.store(cell, b.select(infinite, zero, peak))

    def find_max(cell: Cell) -> None:
        shift.store(cell, select_max(b, shift.load(cell), load(b, x.ptr, x.dtype, cell.offset), "float"))

    def accumulate(cell: Cell) -> None:
        shifted = b.fsub(load(b, x.ptr, x.dtype, cell.offset), shift.load(cell))
        total.store(cell, b.fadd(total.load(cell), exp(b, shifted), flags=REASSOCIATE))

    def finish(cell: Cell) -> None:
        store(b, b.fadd(log(b, total.load(cell)), shift.load(cell)), y.ptr, y.dtype, cell.kept)

    def item(segment: Segment) -> None:
        segment.columns(start)
        segment.sweep(find_max)
        segment.columns(finite_shift)
        segment.sweep(accumulate)
        segment.columns(finish)

    emit_segments(b, split, ctx.begin, ctx.end, item)


def _check_reduce(graph: Graph, node: Node) -> str | None:
    reducer = REDUCERS.get(node.op_type)
    problem = dtype_problem(node, graph.input_types(node)[0].dtype,
                            FLOATS + (reducer.integers if reducer is not None else ()))
    if problem:
        return problem
    if "axes" in node.attrs:
        return f"{node.op_type} with an axes attribute (opset < 13/18 form) is not compiled by the cpu target"
    axes, rank = axes_input(graph, node), len(graph.input_types(node)[0].shape)
    if axes is None:
        return f"{node.op_type} with axes computed at run time is not compiled by the cpu target (axes must be a constant)"
    if any(not -rank <= int(axis) < rank for axis in axes):
        return f"{node.op_type} axes {axes.tolist()} are out of range for rank {rank}"
    return None


def _reduce_split(graph: Graph, node: Node) -> AxisSplit:
    return split_axes(graph.input_types(node)[0].shape, reduce_axes(graph, node))


def _emit_reduce(ctx: KernelContext) -> None:
    split = _reduce_split(ctx.graph, ctx.node)
    if ctx.node.op_type == LOG_SUM_EXP:
        _emit_log_sum_exp(ctx, split)
    else:
        emit_reduction(ctx, REDUCERS[ctx.node.op_type], split)


register_kernel(KernelSpec((*REDUCERS, LOG_SUM_EXP), _check_reduce,
                           lambda graph, node: _reduce_split(graph, node).work_items, _emit_reduce))


# ----- ArgMax / ArgMin ------------------------------------------------------------------------
def _arg_axis(graph: Graph, node: Node) -> int:
    rank = len(graph.input_types(node)[0].shape)
    return node.attrs.get("axis", 0) % rank


def _check_arg(graph: Graph, node: Node) -> str | None:
    input_type = graph.input_types(node)[0]
    problem = dtype_problem(node, input_type.dtype, FLOATS + INTEGERS)
    if problem:
        return problem
    rank, axis = len(input_type.shape), node.attrs.get("axis", 0)
    if not -rank <= axis < rank:
        return f"{node.op_type} axis {axis} is out of range for rank {rank}"
    if input_type.shape[axis] == 0:
        return f"{node.op_type} along an empty axis has no answer"
    return None


def _arg_split(graph: Graph, node: Node) -> AxisSplit:
    return split_axes(graph.input_types(node)[0].shape, [_arg_axis(graph, node)])


def _emit_arg(ctx: KernelContext) -> None:
    """Keep the best value and its index; NaN beats every number (as numpy's argmax/argmin)."""
    b, x, y, node = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node
    split = _arg_split(ctx.graph, node)
    value_type, kind = element_type(x.dtype), kind_of(x.dtype)
    last = bool(node.attrs.get("select_last_index", 0))
    order = (">" if node.op_type == "ArgMax" else "<") + ("=" if last else "")
    best, index = Scratch(b, split, value_type), Scratch(b, split, I64)

    def start(cell: Cell) -> None:
        best.store(cell, (lowest if node.op_type == "ArgMax" else highest)(value_type, kind))
        index.store(cell, ir.Constant(I64, 0))

    def visit(cell: Cell) -> None:
        value, current = load(b, x.ptr, x.dtype, cell.offset), best.load(cell)
        if kind == "float":
            better = b.fcmp_ordered(order, value, current)
            takes_nan = b.fcmp_unordered("uno", value, value)
            if not last:
                takes_nan = b.and_(takes_nan, b.fcmp_ordered("ord", current, current))
            better = b.or_(better, takes_nan)
        else:
            better = b.icmp_signed(order, value, current)
        best.store(cell, b.select(better, value, current))
        index.store(cell, b.select(better, cell.position, index.load(cell)))

    def item(segment: Segment) -> None:
        segment.columns(start)
        segment.sweep(visit)
        segment.columns(lambda cell: store(b, index.load(cell), y.ptr, y.dtype, cell.kept))

    emit_segments(b, split, ctx.begin, ctx.end, item)


register_kernel(KernelSpec(("ArgMax", "ArgMin"), _check_arg,
                           lambda graph, node: _arg_split(graph, node).work_items, _emit_arg))
