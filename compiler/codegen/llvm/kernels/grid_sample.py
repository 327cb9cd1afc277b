"""GridSample and AffineGrid.

GridSample reads its sampling positions from the grid at run time. A work item is a block of
output positions of one image: it first turns each position's grid entry into taps (input
offsets and weights, shared by every channel) in stack arrays, then blends them for each
channel in turn, so the grid is decoded once per block and the output is written contiguously.

Coordinates follow onnx.reference step by step: denormalized in X's float type, nearest rounds
half to even, and a coordinate outside [x_min, x_max] is clamped (border) or folded back
(reflection, in float64) per axis; then each tap outside the input reads 0 (zeros), the edge
(border) or its mirror (reflection). A coordinate is finally held within a few elements of the
input, which leaves every result unchanged and keeps NaN or huge grid values from overflowing
an index.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F64, I64, const_i64, convert, element_type, for_range, load, store
from compiler.codegen.llvm.kernels.linear_algebra import smax, smin, stack_buffer, unravel
from compiler.codegen.llvm.kernels.lookup_tables import Table
from compiler.codegen.llvm.kernels.math_functions import float_constant, float_to_int, intrinsic
from compiler.codegen.llvm.kernels.reduction import FLOATS, dtype_problem
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

BLOCK = 64  # output positions per work item
MODES = {"bilinear": "linear", "linear": "linear", "nearest": "nearest", "bicubic": "cubic", "cubic": "cubic"}
TAPS = {"nearest": 1, "linear": 2, "cubic": 4}  # per spatial axis
PADDINGS = ("zeros", "border", "reflection")
CUBIC_A = -0.75
MARGIN = 4  # coordinates are held within [-MARGIN, size + MARGIN - 1]: past that every tap is outside


@dataclass(frozen=True)
class SampleGeometry:
    mode: str
    padding: str
    align_corners: bool
    channels: int
    size_in: tuple[int, ...]
    size_out: tuple[int, ...]

    @property
    def taps(self) -> int:
        return TAPS[self.mode] ** len(self.size_in)

    @property
    def points(self) -> int:
        return math.prod(self.size_out)

    @property
    def blocks(self) -> int:
        return -(-self.points // BLOCK)


def _sample_geometry(graph: Graph, node: Node) -> SampleGeometry:
    x_type = graph.input_types(node)[0]
    return SampleGeometry(MODES.get(node.attrs.get("mode", "linear")), node.attrs.get("padding_mode", "zeros"),
                          bool(node.attrs.get("align_corners", 0)), x_type.shape[1], x_type.shape[2:],
                          node.outputs[0].shape[2:])


def _check_grid_sample(graph: Graph, node: Node) -> str | None:
    x_type, grid_type = graph.input_types(node)
    problem = dtype_problem(node, x_type.dtype, FLOATS) or dtype_problem(node, grid_type.dtype, FLOATS)
    if problem:
        return problem
    mode, padding = node.attrs.get("mode", "linear"), node.attrs.get("padding_mode", "zeros")
    if mode not in MODES:
        return f"GridSample mode={mode!r} is not one of {', '.join(MODES)}"
    if padding not in PADDINGS:
        return f"GridSample padding_mode={padding!r} is not one of {', '.join(PADDINGS)}"
    rank = len(x_type.shape) - 2
    if not 1 <= rank <= 3 or grid_type.shape[-1] != rank:
        return f"GridSample needs 1 to 3 spatial dims with a grid of as many coordinates, not X {x_type.shape} " \
               f"and grid {grid_type.shape}"
    if 0 in x_type.shape[2:] and math.prod(node.outputs[0].shape):
        return "GridSample from an empty input has nothing to sample"
    return None


def _reflect(b: ir.IRBuilder, value: ir.Value, low: float, high: float) -> ir.Value:
    """Fold a float64 coordinate outside [low, high] back in, mirroring at the borders (onnx.reference's
    _gs_reflect); in-range values are the caller's to keep."""
    c = lambda v: float_constant(F64, v)
    below = b.fcmp_ordered("<", value, c(low))
    distance = b.select(below, b.fsub(c(low), value), b.fsub(value, c(high)))
    flips = intrinsic(b, "trunc", b.fdiv(distance, c(high - low)))
    rest = b.fsub(distance, b.fmul(flips, c(high - low)))
    half = b.fmul(flips, c(0.5))
    odd = b.fcmp_ordered("!=", intrinsic(b, "floor", half), half)
    return b.select(b.xor(below, odd), b.fadd(c(low), rest), b.fsub(c(high), rest))


def _cubic_weights(b: ir.IRBuilder, t: ir.Value) -> list[ir.Value]:
    """Keys' weights (a = -0.75) of the taps at -1, 0, 1, 2 for fraction t, in onnx.reference's order of operations."""
    c = lambda v: float_constant(t.type, v)
    a = CUBIC_A

    def far(d):  # ((a*d - 5a)*d + 8a)*d - 4a
        return b.fsub(b.fmul(b.fadd(b.fmul(b.fsub(b.fmul(c(a), d), c(5 * a)), d), c(8 * a)), d), c(4 * a))

    def near(d):  # ((a+2)*d - (a+3))*d*d + 1
        return b.fadd(b.fmul(b.fmul(b.fsub(b.fmul(c(a + 2), d), c(a + 3)), d), d), c(1.0))

    one_minus = b.fsub(c(1.0), t)
    return [far(b.fadd(t, c(1.0))), near(t), near(one_minus), far(b.fsub(c(2.0), t))]


class _AxisSampler:
    """One spatial axis of GridSample: grid value -> taps (index into the axis, validity, weight)."""

    def __init__(self, b: ir.IRBuilder, geometry: SampleGeometry, size: int):
        self.b, self.g, self.size = b, geometry, size
        self.low, self.high = (0.0, size - 1.0) if geometry.align_corners else (-0.5, size - 0.5)

    def coordinate(self, normalized: ir.Value) -> ir.Value:
        b, g, size = self.b, self.g, self.size
        c = lambda v: float_constant(normalized.type, v)
        one = c(1.0)
        if g.align_corners:
            x = b.fmul(b.fdiv(b.fadd(normalized, one), c(2.0)), c(size - 1))
        else:
            x = b.fdiv(b.fsub(b.fmul(b.fadd(normalized, one), c(size)), one), c(2.0))
        if g.mode == "nearest":
            x = intrinsic(b, "roundeven", x)
        outside = b.or_(b.fcmp_ordered("<", x, c(self.low)), b.fcmp_ordered(">", x, c(self.high)))
        if g.padding == "border":
            x = b.select(outside, intrinsic(b, "minnum", intrinsic(b, "maxnum", x, c(0.0)), c(size - 1)), x)
        elif g.padding == "reflection":
            folded = _reflect(b, b.fpext(x, F64) if x.type != F64 else x, self.low, self.high)
            x = b.select(outside, b.fptrunc(folded, x.type) if x.type != F64 else folded, x)
        return intrinsic(b, "minnum", intrinsic(b, "maxnum", x, c(-MARGIN)), c(size + MARGIN - 1))

    def tap(self, index: ir.Value) -> tuple[ir.Value, ir.Value | None]:
        """(index inside the axis, whether the tap is inside the input: zeros padding only)."""
        b, last = self.b, const_i64(self.size - 1)
        if self.g.padding == "zeros":
            inside = b.and_(b.icmp_signed(">=", index, const_i64(0)), b.icmp_signed("<=", index, last))
            return index, inside
        if self.g.padding == "reflection" and self.g.mode != "nearest":
            outside = b.or_(b.icmp_signed("<", index, const_i64(0)), b.icmp_signed(">", index, last))
            folded = _reflect(b, b.sitofp(index, F64), self.low, self.high)
            index = b.select(outside, float_to_int(b, folded, I64, True), index)
        return smin(b, smax(b, index, const_i64(0)), last), None

    def taps(self, normalized: ir.Value) -> list[tuple[ir.Value, ir.Value | None, ir.Value | None]]:
        """(index, inside, weight) per tap; nearest has one tap and no weight."""
        b, x = self.b, self.coordinate(normalized)
        if self.g.mode == "nearest":
            return [(*self.tap(float_to_int(b, x, I64, True)), None)]
        floor = intrinsic(b, "floor", x)
        t, first = b.fsub(x, floor), float_to_int(b, floor, I64, True)
        if self.g.mode == "linear":
            weights, shifts = [b.fsub(float_constant(x.type, 1.0), t), t], [0, 1]
        else:
            weights, shifts = _cubic_weights(b, t), [-1, 0, 1, 2]
        return [(*self.tap(b.add(first, const_i64(shift))), weight) for shift, weight in zip(shifts, weights)]


def _emit_grid_sample(ctx: KernelContext) -> None:
    b, (x, grid), y = ctx.builder, ctx.inputs, ctx.outputs[0]
    g = _sample_geometry(ctx.graph, ctx.node)
    if g.points == 0 or g.channels == 0:
        return
    rank, taps, compute = len(g.size_in), g.taps, element_type(x.dtype)
    in_strides = [math.prod(g.size_in[i + 1:]) for i in range(rank)]
    offsets = stack_buffer(b, "int64", BLOCK * taps)  # -1: a tap outside the input (zeros padding)
    weights = stack_buffer(b, x.dtype, BLOCK * taps) if g.mode != "nearest" else None
    total = b.alloca(compute)
    with for_range(b, ctx.begin, ctx.end, name="item") as item:
        image, block = b.udiv(item, const_i64(g.blocks)), b.urem(item, const_i64(g.blocks))
        first = b.mul(block, const_i64(BLOCK))
        count = smin(b, const_i64(BLOCK), b.sub(const_i64(g.points), first))
        with for_range(b, 0, count, name="point") as point:
            entry = b.mul(b.add(b.mul(image, const_i64(g.points)), b.add(first, point)), const_i64(rank))
            axes = []
            for axis, size in enumerate(g.size_in):  # grid entries list the innermost axis first
                normalized = convert(b, load(b, grid.ptr, grid.dtype, b.add(entry, const_i64(rank - 1 - axis))),
                                     grid.dtype, x.dtype)
                axes.append(_AxisSampler(b, g, size).taps(normalized))
            for slot, combination in enumerate(itertools.product(*axes)):
                offset, weight, inside = const_i64(0), None, None
                for (index, axis_inside, axis_weight), stride in zip(combination, in_strides):
                    offset = b.add(offset, b.mul(index, const_i64(stride)))
                    weight = axis_weight if weight is None else b.fmul(weight, axis_weight)
                    if axis_inside is not None:
                        inside = axis_inside if inside is None else b.and_(inside, axis_inside)
                if inside is not None:
                    offset = b.select(inside, offset, const_i64(-1))
                position = b.add(b.mul(point, const_i64(taps)), const_i64(slot))
                store(b, offset, offsets, "int64", position)
                if weights is not None:
                    store(b, weight, weights, x.dtype, position)
        with for_range(b, 0, g.channels, name="channel") as channel:
            plane = b.add(b.mul(image, const_i64(g.channels)), channel)
            source = b.mul(plane, const_i64(math.prod(g.size_in)))
            target = b.add(b.mul(plane, const_i64(g.points)), first)
            with for_range(b, 0, count, name="sample") as point:
                b.store(float_constant(compute, 0.0), total)
                with for_range(b, 0, taps, name="tap") as tap:
                    position = b.add(b.mul(point, const_i64(taps)), tap)
                    offset = load(b, offsets, "int64", position)
                    value = load(b, x.ptr, x.dtype, b.add(source, smax(b, offset, const_i64(0))))
                    if g.padding == "zeros":
                        value = b.select(b.icmp_signed(">=", offset, const_i64(0)), value, float_constant(compute, 0.0))
                    if weights is not None:
                        value = b.fadd(b.load(total, typ=compute), b.fmul(load(b, weights, x.dtype, position), value))
                    b.store(value, total)
                store(b, b.load(total, typ=compute), y.ptr, y.dtype, b.add(target, point))


def _grid_sample_items(graph: Graph, node: Node) -> int:
    g = _sample_geometry(graph, node)
    return node.outputs[0].shape[0] * g.blocks if g.channels else 0


register_kernel(KernelSpec(("GridSample",), _check_grid_sample, _grid_sample_items, _emit_grid_sample))


# ----- AffineGrid --------------------------------------------------------------------------------
def _base_grid(size: int, align_corners: bool) -> np.ndarray | None:
    """Normalized coordinates of an axis' sampling positions, as onnx.reference builds them (np.arange).

    A single position with align_corners is 0, as PyTorch's affine_grid has it (onnx.reference
    divides by zero there, ONNX Runtime gives 1)."""
    if size == 0 or (align_corners and size == 1):
        return np.zeros(size)
    if align_corners:
        coordinates = np.arange(-1, 1 + 0.0001, 2.0 / (size - 1))
    else:
        step = 2.0 / size
        coordinates = np.arange(-1 + step / 2, 1, step)
    return coordinates if len(coordinates) == size else None


def _check_affine_grid(graph: Graph, node: Node) -> str | None:
    theta = graph.input_types(node)[0]
    problem = dtype_problem(node, theta.dtype, FLOATS)
    if problem:
        return problem
    batch, *spatial, rank = node.outputs[0].shape
    if rank not in (2, 3) or theta.shape != (batch, rank, rank + 1) or len(spatial) != rank:
        return f"AffineGrid needs theta of shape (N, 2, 3) or (N, 3, 4), not {theta.shape}"
    if any(_base_grid(size, bool(node.attrs.get("align_corners", 0))) is None for size in spatial):
        return f"AffineGrid spatial sizes {tuple(spatial)} are too large for its float64 positions"
    return None


def _emit_affine_grid(ctx: KernelContext) -> None:
    """Per row of output positions: theta @ (x, y[, z], 1) in float64 (as onnx.reference), rounded once."""
    b, theta, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    batch, *spatial, rank = y.shape
    if math.prod(y.shape) == 0:
        return
    align_corners = bool(ctx.node.attrs.get("align_corners", 0))
    grids = [Table(ctx.module, _base_grid(size, align_corners), "kiln.affine_grid.base") for size in spatial]
    *outer_sizes, width = spatial
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        image, *outer = unravel(b, row, (batch, *outer_sizes))
        matrix = [[convert(b, load(b, theta.ptr, theta.dtype, b.add(b.mul(image, const_i64(rank * (rank + 1))),
                                                                       const_i64(i * (rank + 1) + k))),
                           theta.dtype, "float64") for k in range(rank + 1)] for i in range(rank)]
        # homogeneous coordinates list the innermost axis first: (x, y[, z], 1)
        fixed = [grids[axis].load(b, position) for axis, position in zip(range(len(outer)), outer)][::-1]
        with for_range(b, 0, width, name="col") as column:
            point = [grids[-1].load(b, column), *fixed]
            target = b.mul(b.add(b.mul(row, const_i64(width)), column), const_i64(rank))
            for i, coefficients in enumerate(matrix):
                value = b.fmul(coefficients[0], point[0])
                for coefficient, coordinate in zip(coefficients[1:rank], point[1:]):
                    value = b.fadd(value, b.fmul(coefficient, coordinate))
                value = b.fadd(value, coefficients[rank])
                store(b, convert(b, value, "float64", y.dtype), y.ptr, y.dtype, b.add(target, const_i64(i)))


def _affine_grid_rows(graph: Graph, node: Node) -> int:
    batch, *spatial, _ = node.outputs[0].shape
    return batch * math.prod(spatial[:-1]) if math.prod(spatial) else 0


register_kernel(KernelSpec(("AffineGrid",), _check_affine_grid, _affine_grid_rows, _emit_affine_grid))
