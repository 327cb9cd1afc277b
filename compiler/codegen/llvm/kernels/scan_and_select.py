"""Per-axis scans and selections: CumSum, CumProd, Hardmax, LpNormalization, and Trilu.

All but Trilu run on the kept × reduced loop nest with the chosen axis as the reduced set, so a
work item scans (or selects over) whole axis lines in one fixed order whatever the thread split.
Trilu masks the last two dims: one work item per matrix row.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I64, const_i64, element_type, for_range, kind_of, load, store
from compiler.codegen.llvm.kernels.axis_loops import (REASSOCIATE, AxisSplit, Cell, Scratch, Segment, emit_segments,
                                                      split_axes)
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic
from compiler.codegen.llvm.kernels.reduction import FLOATS, INTEGERS, dtype_problem, lowest
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node
from compiler.ir.types import numpy_dtype


def _shape(graph: Graph, node: Node) -> tuple[int, ...]:
    return graph.input_types(node)[0].shape


def _constant_int(graph: Graph, node: Node, index: int) -> int | None:
    """The single int of constant input `index`; None when that input is absent."""
    values = graph.input_values(node)
    if index >= len(values) or values[index] is None:
        return None
    constant = graph.constant_value(values[index])
    if constant is None:
        raise ValueError(f"{node.op_type} with input {index} computed at run time is not compiled by the cpu target "
                         "(it shapes the loops, so it must be a constant)")
    if np.size(constant) != 1:
        raise ValueError(f"{node.op_type} input {index} must hold one value, not shape {np.shape(constant)}")
    return int(np.ravel(constant)[0])


def _axis_problem(node: Node, axis: int, rank: int) -> str | None:
    return None if -rank <= axis < rank else f"{node.op_type} axis {axis} is out of range for rank {rank}"


# ----- CumSum / CumProd -----------------------------------------------------------------------
class Scan(NamedTuple):
    """A running combination: its identity and the IRBuilder methods combining floats and integers."""

    identity: int
    float_op: str
    integer_op: str


SCANS = {"CumSum": Scan(0, "fadd", "add"), "CumProd": Scan(1, "fmul", "mul")}


def _scan_split(graph: Graph, node: Node) -> AxisSplit:
    shape = _shape(graph, node)
    return split_axes(shape, [_constant_int(graph, node, 1) % len(shape)])


def _check_scan(graph: Graph, node: Node) -> str | None:
    problem = dtype_problem(node, graph.input_types(node)[0].dtype, FLOATS + INTEGERS)
    if problem:
        return problem
    try:
        axis = _constant_int(graph, node, 1)
    except ValueError as error:
        return str(error)
    if axis is None:
        return f"{node.op_type} needs its axis input"
    return _axis_problem(node, axis, len(_shape(graph, node)))


def _emit_scan(ctx: KernelContext) -> None:
    """Each column's running value walks its axis line (backwards when `reverse`); `exclusive`
    stores the running value before folding in the element, otherwise after."""
    b, x, y, attrs = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node.attrs
    split, scan = _scan_split(ctx.graph, ctx.node), SCANS[ctx.node.op_type]
    value_type, kind = element_type(x.dtype), kind_of(x.dtype)
    combine = getattr(b, scan.float_op if kind == "float" else scan.integer_op)
    identity = ir.Constant(value_type, float(scan.identity) if kind == "float" else scan.identity)
    exclusive, reverse = bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0)) and split.reduced
    running = Scratch(b, split, value_type)

    def element_offset(cell: Cell) -> ir.Value:
        """The cell's offset, mirrored along the axis when scanning in reverse."""
        if not reverse:
            return cell.offset
        (axis,) = split.reduced
        steps_back = b.sub(const_i64(axis.size - 1), b.mul(cell.position, const_i64(2)))
        return b.add(cell.offset, b.mul(steps_back, const_i64(axis.stride)))

    def visit(cell: Cell) -> None:
        offset = element_offset(cell)
        before = running.load(cell)
        after = combine(before, load(b, x.ptr, x.dtype, offset))
        running.store(cell, after)
        store(b, before if exclusive else after, y.ptr, y.dtype, offset)

    def item(segment: Segment) -> None:
        segment.columns(lambda cell: running.store(cell, identity))
        segment.sweep(visit)

    emit_segments(b, split, ctx.begin, ctx.end, item)


register_kernel(KernelSpec(tuple(SCANS), _check_scan,
                           lambda graph, node: _scan_split(graph, node).work_items, _emit_scan))


# ----- Hardmax --------------------------------------------------------------------------------
def _hardmax_default_axis(node: Node) -> int:
    return 1 if _hardmax_flattens(node) else -1


def _hardmax_flattens(node: Node) -> bool:
    """Before opset 13 Hardmax flattened the input to 2-d at `axis` and selected over the second dim."""
    return (node.version or 13) < 13


def _hardmax_axes(graph: Graph, node: Node) -> range:
    rank = len(_shape(graph, node))
    axis = node.attrs.get("axis", _hardmax_default_axis(node)) % rank
    return range(axis, rank if _hardmax_flattens(node) else axis + 1)


def _hardmax_split(graph: Graph, node: Node) -> AxisSplit:
    return split_axes(_shape(graph, node), _hardmax_axes(graph, node))


def _check_float_axis(graph: Graph, node: Node, default_axis: int) -> str | None:
    """X must be float32/float64 and the axis attribute in range."""
    problem = dtype_problem(node, graph.input_types(node)[0].dtype, FLOATS)
    return problem or _axis_problem(node, node.attrs.get("axis", default_axis), len(_shape(graph, node)))


def _emit_hardmax(ctx: KernelContext) -> None:
    """1 at the first maximum of each axis line (the first NaN, if any, as numpy's argmax), 0 elsewhere."""
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    split, value_type = _hardmax_split(ctx.graph, ctx.node), element_type(x.dtype)
    best, best_position = Scratch(b, split, value_type), Scratch(b, split, I64)

    def start(cell: Cell) -> None:
        best.store(cell, lowest(value_type, "float"))
        best_position.store(cell, const_i64(0))

    def compare(cell: Cell) -> None:
        value, current = load(b, x.ptr, x.dtype, cell.offset), best.load(cell)
        first_nan = b.and_(b.fcmp_unordered("uno", value, value), b.fcmp_ordered("ord", current, current))
        better = b.or_(b.fcmp_ordered(">", value, current), first_nan)
        best.store(cell, b.select(better, value, current))
        best_position.store(cell, b.select(better, cell.position, best_position.load(cell)))

    def write(cell: Cell) -> None:
        chosen = b.icmp_signed("==", cell.position, best_position.load(cell))
        one, zero = float_constant(value_type, 1.0), float_constant(value_type, 0.0)
        store(b, b.select(chosen, one, zero), y.ptr, y.dtype, cell.offset)

    def item(segment: Segment) -> None:
        segment.columns(start)
        segment.sweep(compare)
        segment.sweep(write)

    emit_segments(b, split, ctx.begin, ctx.end, item)


def _check_hardmax(graph: Graph, node: Node) -> str | None:
    return _check_float_axis(graph, node, _hardmax_default_axis(node))


register_kernel(KernelSpec(("Hardmax",), _check_hardmax,
                           lambda graph, node: _hardmax_split(graph, node).work_items, _emit_hardmax))


# ----- LpNormalization ------------------------------------------------------------------------
def _lp_split(graph: Graph, node: Node) -> AxisSplit:
    shape = _shape(graph, node)
    return split_axes(shape, [node.attrs.get("axis", -1) % len(shape)])


def _check_lp_normalization(graph: Graph, node: Node) -> str | None:
    if node.attrs.get("p", 2) not in (1, 2):
        return f"LpNormalization with p={node.attrs['p']} is undefined (ONNX allows p = 1 or 2)"
    return _check_float_axis(graph, node, -1)


def _emit_lp_normalization(ctx: KernelContext) -> None:
    """y = x / (sum |x| or sqrt(sum x²)) along the axis; a zero norm gives 0, as in the ONNX tests."""
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    split, squares = _lp_split(ctx.graph, ctx.node), ctx.node.attrs.get("p", 2) == 2
    value_type = element_type(x.dtype)
    zero = float_constant(value_type, 0.0)
    norm = Scratch(b, split, value_type)

    def accumulate(cell: Cell) -> None:
        value = load(b, x.ptr, x.dtype, cell.offset)
        term = b.fmul(value, value) if squares else intrinsic(b, "fabs", value)
        norm.store(cell, b.fadd(norm.load(cell), term, flags=REASSOCIATE))

    def write(cell: Cell) -> None:
        total = norm.load(cell)
        quotient = b.fdiv(load(b, x.ptr, x.dtype, cell.offset), total)
        store(b, b.select(b.fcmp_ordered("==", total, zero), zero, quotient), y.ptr, y.dtype, cell.offset)

    def item(segment: Segment) -> None:
        segment.columns(lambda cell: norm.store(cell, zero))
        segment.sweep(accumulate)
        if squares:
            segment.columns(lambda cell: norm.store(cell, intrinsic(b, "sqrt", norm.load(cell))))
        segment.sweep(write)

    emit_segments(b, split, ctx.begin, ctx.end, item)


register_kernel(KernelSpec(("LpNormalization",), _check_lp_normalization,
                           lambda graph, node: _lp_split(graph, node).work_items, _emit_lp_normalization))


# ----- Trilu ----------------------------------------------------------------------------------
def _check_trilu(graph: Graph, node: Node) -> str | None:
    input_type = graph.input_types(node)[0]
    if len(input_type.shape) < 2:
        return "Trilu needs an input of rank >= 2"
    try:
        if input_type.dtype == "string" or numpy_dtype(input_type.dtype).itemsize not in (1, 2, 4, 8):
            return (f"Trilu on {input_type.dtype} is not compiled by the cpu target "
                    "(it copies elements of 1, 2, 4 or 8 bytes)")
        _constant_int(graph, node, 1)
    except ValueError as error:
        return str(error)
    return None


def _emit_trilu(ctx: KernelContext) -> None:
    """Row i keeps column j when j - i >= k (upper) or j - i <= k (lower), else writes zero bits;
    elements move as same-width integers, so any dtype works bit-exactly."""
    b, x, y, node = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node
    rows, columns = x.shape[-2:]
    bits = ir.IntType(8 * numpy_dtype(x.dtype).itemsize)
    diagonal = const_i64(_constant_int(ctx.graph, node, 1) or 0)
    keep_side = ">=" if node.attrs.get("upper", 1) else "<="
    with for_range(b, ctx.begin, ctx.end, name="row") as item:
        row_start = b.mul(item, const_i64(columns))
        row = b.urem(item, const_i64(rows))
        with for_range(b, 0, columns, name="column") as column:
            keep = b.icmp_signed(keep_side, b.sub(column, row), diagonal)
            index = b.add(row_start, column)
            value = b.load(b.gep(x.ptr, [index], source_etype=bits, inbounds=True), typ=bits)
            target = b.gep(y.ptr, [index], source_etype=bits, inbounds=True)
            b.store(b.select(keep, value, ir.Constant(bits, 0)), target)


register_kernel(KernelSpec(("Trilu",), _check_trilu,
                           lambda graph, node: math.prod(_shape(graph, node)[:-1]), _emit_trilu))
