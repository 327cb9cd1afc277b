"""Resize, and Upsample (its deprecated form): each output element blends input taps, axis by axis,
through the constant tables of compiler/codegen/resize_tables.py (shared with the gpu target).

A work item is a block of output columns (the innermost axis) of one output row. Linear and
cubic first blend the rows of the outer resized axes over the block's input span into a
scratch row (contiguous, so it vectorizes), then gather each column's taps from it; nearest
copies elements, so it handles every dtype bit-exactly.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from functools import reduce

import numpy as np
from llvmlite import ir

from compiler.codegen.copy_plan import NotCompiled
from compiler.codegen.llvm.irhelpers import (ELEMENT_TYPES, F64, const_i64, convert, element_type, for_range, kind_of,
                                             load, store)
from compiler.codegen.llvm.kernels.linear_algebra import stack_buffer, unravel
from compiler.codegen.llvm.kernels.lookup_tables import Table
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.codegen.resize_tables import Axis, Settings, resized_axes, settings_of
from compiler.ir.graph import Graph, Node

FLOATS = ("float16", "float32", "float64")
# Linear and cubic on integers blend in float64, then round half to even and saturate, as onnx.reference does.
INTEGERS = ("int8", "uint8", "int16", "uint16", "int32", "uint32")
NEAREST_DTYPES = tuple(dtype for dtype, (_, kind) in ELEMENT_TYPES.items()
                       if kind in ("float", "signed", "unsigned", "bool"))  # nearest only copies elements
MAX_COLUMNS = 1024  # output columns per work item
MAX_SPAN = 4096  # input columns one work item blends into its scratch row (bounds that stack array)...
MAX_SCRATCH = 1 << 16  # ...unless one output column's taps span more: then up to this many


@dataclass(frozen=True)
class Plan:
    axes: tuple[Axis, ...]  # outer axes, then the columns
    blocks: np.ndarray  # (blocks, 4): first output column, columns, first input column, input columns
    settings: Settings

    @property
    def weighted(self) -> bool:
        return self.settings.mode != "nearest"

    @property
    def blends_rows(self) -> bool:
        """Whether outer axes are blended (into a scratch row) before the columns."""
        return self.weighted and any(axis.index is not None for axis in self.axes[:-1])

    @property
    def rows(self) -> int:
        return math.prod(axis.size_out for axis in self.axes[:-1])


def _blocks(columns: Axis) -> np.ndarray:
    """Cut the output columns into work items whose taps span at most MAX_SPAN input columns."""
    if columns.index is None:
        starts = range(0, columns.size_out, MAX_COLUMNS)
        return np.array([(s, min(MAX_COLUMNS, columns.size_out - s), s, min(MAX_COLUMNS, columns.size_out - s))
                         for s in starts], np.int64).reshape(-1, 4)
    lows, highs = columns.index.min(axis=1).tolist(), columns.index.max(axis=1).tolist()
    blocks, first = [], 0
    while first < columns.size_out:
        low, high, end = lows[first], highs[first], first + 1
        while end < columns.size_out and end - first < MAX_COLUMNS:
            new_low, new_high = min(low, lows[end]), max(high, highs[end])
            if new_high - new_low + 1 > MAX_SPAN:
                break
            low, high, end = new_low, new_high, end + 1
        blocks.append((first, end - first, low, high - low + 1))
        first = end
    return np.array(blocks, np.int64).reshape(-1, 4)


def _plan(graph: Graph, node: Node) -> Plan:
    x_type = graph.input_types(node)[0]
    settings = settings_of(node)
    known = NEAREST_DTYPES if settings.mode == "nearest" else FLOATS + INTEGERS
    if x_type.dtype not in known:
        raise NotCompiled(f"{node.op_type} mode={settings.mode} on {x_type.dtype} is not compiled by the cpu target "
                          f"(it handles {', '.join(known)})")
    axes = resized_axes(graph, node, settings)
    plan = Plan(tuple(axes), _blocks(axes[-1]), settings)
    if plan.blends_rows and len(plan.blocks) and plan.blocks[:, 3].max() > MAX_SCRATCH:
        raise NotCompiled(f"{node.op_type} antialias windows span more than {MAX_SCRATCH} input columns "
                          "(the cpu target blends them in a stack buffer)")
    return plan


def _check(graph: Graph, node: Node) -> str | None:
    try:
        _plan(graph, node)
    except NotCompiled as error:
        return str(error)
    return None


def _work_items(graph: Graph, node: Node) -> int:
    if math.prod(node.outputs[0].shape) == 0:
        return 0
    plan = _plan(graph, node)
    return plan.rows * len(plan.blocks)


# ----- code --------------------------------------------------------------------------------------
class _AxisTables:
    """An axis's tables in the module (none for an axis copied unchanged)."""

    def __init__(self, module: ir.Module, axis: Axis, compute: str):
        self.axis = axis
        self.index = None if axis.index is None else Table(module, axis.index, "kiln.resize.index")
        self.weight = None if axis.weight is None else \
            Table(module, axis.weight.astype(compute), "kiln.resize.weight")
        self.outside = None if axis.outside is None or not axis.outside.any() else \
            Table(module, axis.outside, "kiln.resize.outside")

    def source(self, b: ir.IRBuilder, coordinate: ir.Value, tap: ir.Value = const_i64(0)) -> ir.Value:
        """Input coordinate of `tap` for output `coordinate`."""
        if self.index is None:
            return coordinate
        return self.index.load(b, b.add(b.mul(coordinate, const_i64(self.axis.taps)), tap))

    def weight_of(self, b: ir.IRBuilder, coordinate: ir.Value, tap: ir.Value) -> ir.Value:
        return self.weight.load(b, b.add(b.mul(coordinate, const_i64(self.axis.taps)), tap))

    def is_outside(self, b: ir.IRBuilder, coordinate: ir.Value) -> ir.Value | None:
        if self.outside is None:
            return None
        return b.icmp_unsigned("!=", self.outside.load(b, coordinate), ir.Constant(element_type("bool"), 0))


def _to_output(b: ir.IRBuilder, value: ir.Value, compute: str, dtype: str) -> ir.Value:
    """A blended value in `dtype`: integers round half to even and saturate, as onnx.reference does."""
    if kind_of(dtype) == "float":
        return convert(b, value, compute, dtype)
    bits, signed = element_type(dtype).width, kind_of(dtype) == "signed"
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    rounded = intrinsic(b, "roundeven", value)
    clamped = intrinsic(b, "minnum", intrinsic(b, "maxnum", rounded, float_constant(value.type, low)),
                        float_constant(value.type, high))
    return convert(b, clamped, compute, dtype)


class _Kernel:
    """The emitter of one Resize node: its operands, tables and the values shared by all work items."""

    def __init__(self, ctx: KernelContext, plan: Plan):
        b = self.b = ctx.builder
        self.plan, self.x, self.y = plan, ctx.inputs[0], ctx.outputs[0]
        self.compute = "float32" if self.x.dtype in ("float16", "float32") else "float64"
        self.value_type = element_type(self.compute)
        *self.outer, self.columns = [_AxisTables(ctx.module, axis, self.compute) for axis in plan.axes]
        self.strides = [math.prod(axis.size_in for axis in plan.axes[i + 1:]) for i in range(len(plan.axes))]
        self.scratch = stack_buffer(b, self.compute, int(plan.blocks[:, 3].max())) if plan.blends_rows else None
        self.total = b.alloca(self.value_type) if plan.weighted else None
        extrapolation = float_constant(F64, plan.settings.extrapolation)
        self.fill = _to_output(b, extrapolation, "float64", self.y.dtype)

    def offset(self, coordinates: list[ir.Value], taps: list) -> ir.Value:
        """Input offset of the outer axes' `taps` for the row at `coordinates`."""
        b, offset = self.b, const_i64(0)
        for table, coordinate, tap, stride in zip(self.outer, coordinates, taps, self.strides):
            offset = b.add(offset, b.mul(table.source(b, coordinate, tap), const_i64(stride)))
        return offset

    def store_column(self, column: ir.Value, value: ir.Value, target: ir.Value) -> None:
        outside = self.columns.is_outside(self.b, column)
        if outside is not None:
            value = self.b.select(outside, self.fill, value)
        store(self.b, value, self.y.ptr, self.y.dtype, target)

    def copy_block(self, coordinates: list[ir.Value], first, count, out_start) -> None:
        """Nearest: each output element is one input element."""
        b, x = self.b, self.x
        offset = self.offset(coordinates, [const_i64(0)] * len(self.outer))
        with for_range(b, 0, count, name="col") as j:
            column = b.add(first, j)
            value = load(b, x.ptr, x.dtype, b.add(offset, self.columns.source(b, column)))
            self.store_column(column, value, b.add(out_start, j))

    def blend_rows(self, coordinates: list[ir.Value], low, span):
        """Scratch[k] = the outer axes' blend of input column low + k; returns a reader of input columns."""
        b, x, scratch = self.b, self.x, self.scratch
        with for_range(b, 0, span, name="clear") as k:
            b.store(float_constant(self.value_type, 0.0), b.gep(scratch, [k], inbounds=True))
        with ExitStack() as loops:
            weight, taps = float_constant(self.value_type, 1.0), []
            for index, (table, coordinate) in enumerate(zip(self.outer, coordinates)):
                if table.index is None:
                    taps.append(const_i64(0))
                    continue
                tap = loops.enter_context(for_range(b, 0, table.axis.taps, name=f"tap{index}"))
                weight = b.fmul(weight, table.weight_of(b, coordinate, tap))
                taps.append(tap)
            start = b.add(self.offset(coordinates, taps), low)
            with for_range(b, 0, span, name="blend") as k:
                element = convert(b, load(b, x.ptr, x.dtype, b.add(start, k)), x.dtype, self.compute)
                slot = b.gep(scratch, [k], inbounds=True)
                b.store(b.fadd(b.load(slot, typ=self.value_type), b.fmul(weight, element)), slot)
        return lambda column: b.load(b.gep(scratch, [b.sub(column, low)], inbounds=True), typ=self.value_type)

    def blend_block(self, coordinates: list[ir.Value], first, count, low, span, out_start) -> None:
        """Linear and cubic: blend the outer axes (into scratch when any is resized), then the columns."""
        b, x, columns = self.b, self.x, self.columns
        if self.plan.blends_rows:
            read = self.blend_rows(coordinates, low, span)
        else:
            row_start = self.offset(coordinates, [const_i64(0)] * len(self.outer))
            def read(column):
                return convert(b, load(b, x.ptr, x.dtype, b.add(row_start, column)), x.dtype, self.compute)
        with for_range(b, 0, count, name="col") as j:
            column = b.add(first, j)
            if columns.index is None:
                value = read(column)
            else:
                b.store(float_constant(self.value_type, 0.0), self.total)
                with for_range(b, 0, columns.axis.taps, name="tap") as tap:
                    term = b.fmul(columns.weight_of(b, column, tap), read(columns.source(b, column, tap)))
                    b.store(b.fadd(b.load(self.total, typ=self.value_type), term), self.total)
                value = b.load(self.total, typ=self.value_type)
            self.store_column(column, _to_output(b, value, self.compute, self.y.dtype), b.add(out_start, j))


def _emit(ctx: KernelContext) -> None:
    if math.prod(ctx.node.outputs[0].shape) == 0:
        return
    plan = _plan(ctx.graph, ctx.node)
    b, kernel, blocks = ctx.builder, _Kernel(ctx, plan), Table(ctx.module, plan.blocks, "kiln.resize.blocks")
    with for_range(b, ctx.begin, ctx.end, name="item") as item:
        row, block = b.udiv(item, const_i64(len(plan.blocks))), b.urem(item, const_i64(len(plan.blocks)))
        first, count, low, span = (blocks.load(b, b.add(b.mul(block, const_i64(4)), const_i64(k))) for k in range(4))
        coordinates = unravel(b, row, [table.axis.size_out for table in kernel.outer])
        out_start = b.add(b.mul(row, const_i64(plan.axes[-1].size_out)), first)
        flags = [t.is_outside(b, c) for t, c in zip(kernel.outer, coordinates) if t.outside is not None]
        with ExitStack() as branch:
            if flags:  # a row outside tf_crop_and_resize's crop is all extrapolation_value
                crop, inside = branch.enter_context(b.if_else(reduce(b.or_, flags)))
                with crop:
                    with for_range(b, 0, count, name="fill") as j:
                        store(b, kernel.fill, kernel.y.ptr, kernel.y.dtype, b.add(out_start, j))
                branch.enter_context(inside)
            if plan.weighted:
                kernel.blend_block(coordinates, first, count, low, span, out_start)
            else:
                kernel.copy_block(coordinates, first, count, out_start)


register_kernel(KernelSpec(("Resize", "Upsample"), _check, _work_items, _emit))
