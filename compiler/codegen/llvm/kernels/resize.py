"""Resize, and Upsample (its deprecated form): each output element blends input taps, axis by axis.

Shapes, scales, sizes and roi are static, so every resized axis is worked out here into
constant tables: for each output coordinate, the input coordinates of its taps (clamped into
the input: the edge padding ONNX specifies), their weights, and whether tf_crop_and_resize
puts it outside the crop (extrapolation_value there). The tables repeat onnx.reference's
float64 arithmetic, so nearest picks the same element (its cubic weights are float32-accurate
only: it computes them with cubic_coeff_a as a float32; here they stay float64). Axes left as
they are (scale 1, no crop) are merged and read straight through.

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

from compiler.codegen.llvm.irhelpers import (ELEMENT_TYPES, F64, const_i64, convert, element_type, for_range, kind_of,
                                             load, store)
from compiler.codegen.llvm.kernels.linear_algebra import stack_buffer, unravel
from compiler.codegen.llvm.kernels.lookup_tables import Table
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.codegen.llvm.kernels.strided_copy import NotCompiled
from compiler.ir.graph import Graph, Node

FLOATS = ("float16", "float32", "float64")
# Linear and cubic on integers blend in float64, then round half to even and saturate, as onnx.reference does.
INTEGERS = ("int8", "uint8", "int16", "uint16", "int32", "uint32")
NEAREST_DTYPES = tuple(dtype for dtype, (_, kind) in ELEMENT_TYPES.items()
                       if kind in ("float", "signed", "unsigned", "bool"))  # nearest only copies elements
MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
POLICIES = ("stretch", "not_larger", "not_smaller")
MAX_COLUMNS = 1024  # output columns per work item
MAX_SPAN = 4096  # input columns one work item blends into its scratch row (bounds that stack array)...
MAX_SCRATCH = 1 << 16  # ...unless one output column's taps span more: then up to this many


@dataclass(frozen=True)
class Settings:
    mode: str
    coordinate_mode: str
    nearest_mode: str  # or "simple" (Upsample, Resize-10): floor when upsampling, ceil when downsampling
    cubic_a: float
    exclude_outside: bool
    antialias: bool
    extrapolation: float
    # Upsample and Resize-10 (onnx.reference cannot run them) follow ONNX Runtime, which maps
    # coordinates in float32: that decides which element nearest picks.
    float32_coordinates: bool = False


@dataclass(frozen=True)
class Axis:
    """One axis of the (merged) input and output; `index` is None where it is copied unchanged.

    index/weight: (size_out, taps) input coordinates and weights (weight None for nearest);
    outside: (size_out,) bool, the coordinates tf_crop_and_resize fills with extrapolation_value.
    """

    size_in: int
    size_out: int
    index: np.ndarray | None = None
    weight: np.ndarray | None = None
    outside: np.ndarray | None = None

    @property
    def taps(self) -> int:
        return 1 if self.index is None else self.index.shape[1]


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


# ----- attributes and constant inputs -----------------------------------------------------------
def _constant(graph: Graph, node: Node, index: int, what: str) -> np.ndarray | None:
    """Constant input `index` flattened; None when it is absent or empty (ONNX's "not given")."""
    values = graph.input_values(node)
    if index >= len(values) or values[index] is None:
        return None
    array = graph.constant_value(values[index])
    if array is None:
        raise NotCompiled(f"{node.op_type} with {what} (input {index}) computed at run time is not compiled by the "
                          "cpu target (it sets the output shape and the sampling tables)")
    array = np.asarray(array).reshape(-1)
    return array if array.size else None


def _settings(node: Node) -> Settings:
    attrs = node.attrs
    legacy = node.op_type == "Upsample" or node.version < 11  # asymmetric, ONNX Runtime's "simple" nearest
    settings = Settings(
        mode=attrs.get("mode", "nearest"),
        coordinate_mode="asymmetric" if legacy else attrs.get("coordinate_transformation_mode", "half_pixel"),
        nearest_mode="simple" if legacy else attrs.get("nearest_mode", "round_prefer_floor"),
        cubic_a=attrs.get("cubic_coeff_a", -0.75), exclude_outside=bool(attrs.get("exclude_outside", 0)),
        antialias=bool(attrs.get("antialias", 0)), extrapolation=attrs.get("extrapolation_value", 0.0),
        float32_coordinates=legacy)
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    for name, value, known in (("mode", settings.mode, MODES),
                               ("coordinate_transformation_mode", settings.coordinate_mode, COORDINATE_MODES),
                               ("nearest_mode", settings.nearest_mode, NEAREST_MODES + ("simple",)),
                               ("keep_aspect_ratio_policy", policy, POLICIES)):
        if value not in known:
            raise NotCompiled(f"{node.op_type} {name}={value!r} is not one of {', '.join(known)}")
    if settings.antialias and settings.mode == "nearest":
        raise NotCompiled(f"{node.op_type} antialias=1 applies to linear and cubic modes only, not nearest")
    return settings


def _geometry(graph: Graph, node: Node, settings: Settings):
    """Per input axis: (scale, output size, roi start and end or None)."""
    shape = graph.input_types(node)[0].shape
    rank = len(shape)
    if node.op_type == "Upsample" and node.version < 9:
        roi, scales, sizes = None, np.asarray(node.attrs["scales"], np.float32), None
    elif node.op_type == "Upsample" or node.version < 11:
        roi, scales, sizes = None, _constant(graph, node, 1, "scales"), None
    else:  # roi only matters to tf_crop_and_resize
        cropped = settings.coordinate_mode == "tf_crop_and_resize"
        roi = _constant(graph, node, 1, "roi") if cropped else None
        scales, sizes = _constant(graph, node, 2, "scales"), _constant(graph, node, 3, "sizes")
    axes = [a % rank for a in node.attrs.get("axes", range(rank))]
    given = sizes if sizes is not None else scales
    if given is None or len(given) != len(axes) or (roi is not None and len(roi) != 2 * len(axes)):
        raise NotCompiled(f"{node.op_type} needs scales or sizes (and roi, if given) for each of its "
                          f"{len(axes)} axes")
    if any(shape[a] == 0 for a in axes) or min(given) <= 0:
        raise NotCompiled(f"{node.op_type} resizes only non-empty axes by positive scales or sizes")
    scale, size = [1.0] * rank, list(shape)
    if sizes is not None:
        ratios = [int(s) / shape[a] for s, a in zip(sizes, axes)]
        policy = node.attrs.get("keep_aspect_ratio_policy", "stretch")
        common = {"not_larger": min, "not_smaller": max}.get(policy, lambda r: None)(ratios)
        for a, ratio, wanted in zip(axes, ratios, sizes):
            scale[a] = ratio if common is None else common
            size[a] = int(wanted) if common is None else int(common * shape[a] + 0.5)
    else:
        for a, factor in zip(axes, scales):
            scale[a], size[a] = float(factor), int(float(factor) * shape[a])
    if settings.coordinate_mode == "tf_crop_and_resize" and roi is None:
        raise NotCompiled(f"{node.op_type} coordinate_transformation_mode=tf_crop_and_resize needs a constant roi")
    crops: list = [None] * rank
    if roi is not None:
        for i, a in enumerate(axes):
            crops[a] = (roi[i], roi[len(axes) + i])  # numpy scalars: onnx.reference computes in roi's dtype
    return list(zip(scale, size, crops))


# ----- per-axis tables (onnx.reference's arithmetic) -------------------------------------------
def _source_coordinates(settings: Settings, size_in: int, size_out: int, scale: float, crop) -> np.ndarray:
    """Input coordinate of each output coordinate; `length` is the unrounded output size."""
    y, length, mode = np.arange(size_out, dtype=np.float64), scale * size_in, settings.coordinate_mode
    if mode == "align_corners":
        return np.zeros(size_out) if length == 1 else y * (size_in - 1) / (length - 1)
    if mode == "asymmetric":
        if settings.float32_coordinates:
            return (y.astype(np.float32) / np.float32(scale)).astype(np.float64)
        return y / scale
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode == "tf_crop_and_resize":
        start, end = crop
        x = np.full(size_out, (end - start) * (size_in - 1) / 2) if length == 1 else \
            y * (end - start) * (size_in - 1) / (length - 1)
        return x + start * (size_in - 1)
    if mode == "pytorch_half_pixel":
        return np.full(size_out, -0.5) if length == 1 else (y + 0.5) / scale - 0.5
    offset = size_in / 2 * (1 - size_out / length) if mode == "half_pixel_symmetric" else 0.0
    return offset + (y + 0.5) / scale - 0.5


def _cubic(distance: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel at |distance|."""
    x = np.abs(distance)
    x2 = x * x
    x3 = x * x2
    near = (a + 2) * x3 - (a + 3) * x2 + 1
    far = a * x3 - 5 * a * x2 + 8 * a * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _coefficients(settings: Settings, ratio: np.ndarray, scale: float) -> np.ndarray:
    """(size_out, taps) weights; `ratio` in (0, 1] is the distance past the tap left of each coordinate."""
    r = ratio[:, None]
    if settings.mode == "nearest":
        mode = settings.nearest_mode
        if mode == "simple":
            mode = "ceil" if scale < 1 else "floor"
        high = {"round_prefer_floor": r > 0.5, "round_prefer_ceil": r >= 0.5,
                "floor": np.zeros_like(r, bool), "ceil": np.ones_like(r, bool)}[mode] | (r == 1)
        return np.concatenate([~high, high], axis=1).astype(np.float64)
    if settings.antialias:  # the kernel stretched by 1/scale when downsampling
        support = 1 if settings.mode == "linear" else 2
        stretch = min(scale, 1.0)
        first = int(np.floor(-support / stretch) + 1)
        distance = (np.arange(first, 2 - first) - r) * stretch
        if settings.mode == "linear":
            weights = np.clip(1 - np.abs(distance), 0, 1)
        else:
            weights = _cubic(distance, settings.cubic_a)
        return weights / weights.sum(axis=1, keepdims=True)
    if settings.mode == "linear":
        return np.concatenate([1 - r, r], axis=1)
    return _cubic(np.concatenate([r + 1, r, 1 - r, 2 - r], axis=1), settings.cubic_a)


def _resized_axis(settings: Settings, size_in: int, size_out: int, scale: float, crop) -> Axis:
    x = _source_coordinates(settings, size_in, size_out, scale, crop)
    if not np.all(np.abs(x) < 2.0 ** 52):
        raise NotCompiled("Resize maps output coordinates to input coordinates out of range (check scales and roi)")
    floor = np.floor(x)
    weights = _coefficients(settings, np.where(x == floor, 1.0, x - floor), scale)
    taps = weights.shape[1]  # even for every kernel here: the taps straddle x, ties going left
    pad = taps // 2
    padded = x + pad
    first = np.floor(padded) - np.where(padded == np.floor(padded), pad, pad - 1)
    index = first.astype(np.int64)[:, None] + np.arange(taps) - pad
    if settings.exclude_outside and settings.mode != "nearest":
        weights = np.where((index < 0) | (index >= size_in), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    outside = (x < 0) | (x > size_in - 1) if settings.coordinate_mode == "tf_crop_and_resize" else None
    if settings.mode == "nearest":
        index = index[np.arange(size_out), weights.argmax(axis=1)][:, None]
        if settings.exclude_outside and ((index < 0) | (index >= size_in)).any():
            raise NotCompiled("Resize nearest with exclude_outside=1 picks elements outside the input here "
                              "(onnx.reference gives 0 for them, ONNX Runtime rejects the attribute)")
        return Axis(size_in, size_out, np.clip(index, 0, size_in - 1), None, outside)
    return Axis(size_in, size_out, np.clip(index, 0, size_in - 1), weights, outside)


def _merged_axes(geometry, shape, settings: Settings) -> list[Axis]:
    """The resized axes with their tables; runs of axes left as they are merge into one."""
    axes: list[Axis] = []
    for size_in, (scale, size_out, crop) in zip(shape, geometry):
        whole = crop is None or (math.isclose(crop[0], 0.0) and math.isclose(crop[1], 1.0))
        if size_out == size_in and math.isclose(scale, 1.0) and whole:
            if axes and axes[-1].index is None:
                axes[-1] = Axis(axes[-1].size_in * size_in, axes[-1].size_out * size_out)
            else:
                axes.append(Axis(size_in, size_out))
        else:
            axes.append(_resized_axis(settings, size_in, size_out, scale, crop))
    return axes if len(axes) > 1 else [Axis(1, 1), *axes]


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
    settings = _settings(node)
    known = NEAREST_DTYPES if settings.mode == "nearest" else FLOATS + INTEGERS
    if x_type.dtype not in known:
        raise NotCompiled(f"{node.op_type} mode={settings.mode} on {x_type.dtype} is not compiled by the cpu target "
                          f"(it handles {', '.join(known)})")
    if len(x_type.shape) == 0:
        raise NotCompiled(f"{node.op_type} needs an input of rank >= 1")
    geometry = _geometry(graph, node, settings)
    sizes = tuple(size for _, size, _ in geometry)
    if sizes != tuple(node.outputs[0].shape):
        raise NotCompiled(f"{node.op_type} output shape {node.outputs[0].shape} differs from the {sizes} its scales "
                          "or sizes give")
    axes = _merged_axes(geometry, x_type.shape, settings)
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
