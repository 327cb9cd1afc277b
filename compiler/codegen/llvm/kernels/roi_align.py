"""RoiAlign: average or max of bilinear samples over each bin of each region of interest.

The regions (and so every sample position) are read at run time. A work item is one output row
(region, bin row): for each bin and each sample of it, the four corner offsets and weights are
worked out once and applied to every channel. The arithmetic repeats onnx.reference (and ONNX
Runtime) in X's float type, in the same order: samples beyond a pixel outside the map weigh 0,
and max mode takes the largest weighted corner, not the interpolated value. A region whose
batch index is outside X gives zeros (ONNX Runtime rejects it).
"""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I64, const_i64, element_type, for_range, load, store
from compiler.codegen.llvm.kernels.math_functions import float_constant, float_to_int, intrinsic
from compiler.codegen.llvm.kernels.reduction import FLOATS, dtype_problem
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

COORDINATE_MODES = ("half_pixel", "output_half_pixel")


def _coordinate_mode(node: Node) -> str:
    default = "half_pixel" if node.version >= 16 else "output_half_pixel"
    return node.attrs.get("coordinate_transformation_mode", default)


def _check(graph: Graph, node: Node) -> str | None:
    x_type, rois_type, indices_type = graph.input_types(node)
    problem = dtype_problem(node, x_type.dtype, FLOATS)
    if problem:
        return problem
    if rois_type.dtype != x_type.dtype or indices_type.dtype != "int64":
        return f"RoiAlign needs rois of X's dtype and int64 batch_indices, not {rois_type.dtype} and " \
               f"{indices_type.dtype}"
    regions = node.outputs[0].shape[0]
    if len(x_type.shape) != 4 or rois_type.shape != (regions, 4) or indices_type.shape != (regions,):
        return f"RoiAlign needs X of rank 4, rois of shape (R, 4) and R batch_indices, not {x_type.shape}, " \
               f"{rois_type.shape} and {indices_type.shape}"
    if 0 in x_type.shape[2:] and math.prod(node.outputs[0].shape):
        return "RoiAlign on an empty feature map has nothing to sample"
    if node.attrs.get("mode", "avg") not in ("avg", "max"):
        return f"RoiAlign mode={node.attrs['mode']!r} is not avg or max"
    if _coordinate_mode(node) not in COORDINATE_MODES:
        return f"RoiAlign coordinate_transformation_mode={_coordinate_mode(node)!r} is not one of " \
               f"{', '.join(COORDINATE_MODES)}"
    return None


class _Sampler:
    """Per-region values of one work item, and the bilinear sample at one position."""

    def __init__(self, ctx: KernelContext, region: ir.Value):
        b, node = ctx.builder, ctx.node
        x, rois = ctx.inputs[0], ctx.inputs[1]
        self.b, self.value_type = b, element_type(x.dtype)
        self.height, self.width = x.shape[2:]
        self.bins_high, self.bins_wide = ctx.outputs[0].shape[2:]
        c = self.constant
        offset = c(0.5 if _coordinate_mode(node) == "half_pixel" else 0.0)
        scale = c(node.attrs.get("spatial_scale", 1.0))
        corner = lambda k: load(b, rois.ptr, rois.dtype, b.add(b.mul(region, const_i64(4)), const_i64(k)))
        self.start_w, self.start_h, end_w, end_h = (b.fsub(b.fmul(corner(k), scale), offset) for k in range(4))
        roi_w, roi_h = b.fsub(end_w, self.start_w), b.fsub(end_h, self.start_h)
        if _coordinate_mode(node) == "output_half_pixel":  # malformed regions become 1 x 1
            roi_w, roi_h = (b.select(b.fcmp_ordered(">", c(1.0), size), c(1.0), size) for size in (roi_w, roi_h))
        self.bin_h, self.bin_w = b.fdiv(roi_h, c(self.bins_high)), b.fdiv(roi_w, c(self.bins_wide))
        ratio = node.attrs.get("sampling_ratio", 0)
        # samples per bin along each axis (ceil(roi size / bins) unless sampling_ratio sets them)
        self.grid_h, self.grid_w = (
            const_i64(ratio) if ratio > 0 else float_to_int(b, intrinsic(b, "ceil", b.fdiv(size, c(bins))), I64, True)
            for size, bins in ((roi_h, self.bins_high), (roi_w, self.bins_wide)))
        self.grid_h_float, self.grid_w_float = (b.sitofp(grid, self.value_type) for grid in (self.grid_h, self.grid_w))
        product = b.fmul(self.grid_h_float, self.grid_w_float)
        self.count = b.select(b.fcmp_ordered(">", c(1.0), product), c(1.0), product)

    def constant(self, value: float) -> ir.Constant:
        return float_constant(self.value_type, value)

    def position(self, start, bin_index, bin_size, sample, grid) -> ir.Value:
        """start + bin * bin_size + (sample + 0.5) * bin_size / grid."""
        b = self.b
        head = b.fadd(start, b.fmul(b.sitofp(bin_index, self.value_type), bin_size))
        offset = b.fmul(b.fadd(b.sitofp(sample, self.value_type), self.constant(0.5)), bin_size)
        return b.fadd(head, b.fdiv(offset, grid))

    def _axis(self, position: ir.Value, size: int):
        """(low index, high index, fraction past low) along one axis for a position inside [-1, size]."""
        b, c = self.b, self.constant
        position = b.select(b.fcmp_ordered(">", c(0.0), position), c(0.0), position)
        low = float_to_int(b, position, I64, True)
        at_edge = b.icmp_signed(">=", low, const_i64(size - 1))
        low = b.select(at_edge, const_i64(size - 1), low)
        high = b.select(at_edge, low, b.add(low, const_i64(1)))
        position = b.select(at_edge, b.sitofp(low, self.value_type), position)
        return low, high, b.fsub(position, b.sitofp(low, self.value_type))

    def corners(self, y: ir.Value, x: ir.Value) -> tuple[list[ir.Value], list[ir.Value]]:
        """Offsets in the map and weights of the four corners around (y, x); all 0 outside."""
        b, c = self.b, self.constant
        outside = b.or_(b.or_(b.fcmp_ordered("<", y, c(-1.0)), b.fcmp_ordered(">", y, c(self.height))),
                        b.or_(b.fcmp_ordered("<", x, c(-1.0)), b.fcmp_ordered(">", x, c(self.width))))
        y_low, y_high, ly = self._axis(y, self.height)
        x_low, x_high, lx = self._axis(x, self.width)
        hy, hx = b.fsub(c(1.0), ly), b.fsub(c(1.0), lx)
        rows = [b.mul(y_low, const_i64(self.width)), b.mul(y_high, const_i64(self.width))]
        offsets = [b.add(rows[0], x_low), b.add(rows[0], x_high), b.add(rows[1], x_low), b.add(rows[1], x_high)]
        weights = [b.fmul(hy, hx), b.fmul(hy, lx), b.fmul(ly, hx), b.fmul(ly, lx)]
        return ([b.select(outside, const_i64(0), offset) for offset in offsets],
                [b.select(outside, c(0.0), weight) for weight in weights])


def _emit(ctx: KernelContext) -> None:
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    batch, channels, height, width = x.shape
    _, _, bins_high, bins_wide = y.shape
    plane_out = bins_high * bins_wide
    zero = float_constant(element_type(x.dtype), 0.0)
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        region, bin_row = b.udiv(row, const_i64(bins_high)), b.urem(row, const_i64(bins_high))
        image = load(b, ctx.inputs[2].ptr, "int64", region)
        known = b.and_(b.icmp_signed(">=", image, const_i64(0)), b.icmp_signed("<", image, const_i64(batch)))
        target_row = b.mul(b.add(b.mul(region, const_i64(channels * bins_high)), bin_row), const_i64(bins_wide))
        with b.if_else(known) as (sample, unknown):
            with sample:
                _emit_row(ctx, region, bin_row, b.mul(image, const_i64(channels * height * width)), target_row)
            with unknown:
                with for_range(b, 0, channels * bins_wide, name="unknown") as k:
                    channel, column = b.udiv(k, const_i64(bins_wide)), b.urem(k, const_i64(bins_wide))
                    slot = b.add(b.add(target_row, column), b.mul(channel, const_i64(plane_out)))
                    store(b, zero, y.ptr, y.dtype, slot)


def _emit_row(ctx: KernelContext, region: ir.Value, bin_row: ir.Value, source: ir.Value, target_row: ir.Value) -> None:
    """One bin row of one region: every channel's bins accumulate in the output, sample by sample."""
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    _, channels, height, width = x.shape
    _, _, bins_high, bins_wide = y.shape
    is_max = ctx.node.attrs.get("mode", "avg") == "max"
    sampler = _Sampler(ctx, region)
    sampled = b.and_(b.icmp_signed(">", sampler.grid_h, const_i64(0)), b.icmp_signed(">", sampler.grid_w, const_i64(0)))
    # a bin with no sample is 0; max starts below every value otherwise
    initial = sampler.constant(0.0)
    if is_max:
        initial = b.select(sampled, sampler.constant(float("-inf")), initial)
    with for_range(b, 0, bins_wide, name="bin") as bin_column:
        target = b.add(target_row, bin_column)
        slot_of = lambda channel: b.add(target, b.mul(channel, const_i64(bins_high * bins_wide)))
        with for_range(b, 0, channels, name="clear") as channel:
            store(b, initial, y.ptr, y.dtype, slot_of(channel))
        with for_range(b, 0, sampler.grid_h, name="sy") as sample_y:
            yy = sampler.position(sampler.start_h, bin_row, sampler.bin_h, sample_y, sampler.grid_h_float)
            with for_range(b, 0, sampler.grid_w, name="sx") as sample_x:
                xx = sampler.position(sampler.start_w, bin_column, sampler.bin_w, sample_x, sampler.grid_w_float)
                offsets, weights = sampler.corners(yy, xx)
                with for_range(b, 0, channels, name="channel") as channel:
                    plane = b.add(source, b.mul(channel, const_i64(height * width)))
                    terms = [b.fmul(w, load(b, x.ptr, x.dtype, b.add(plane, o))) for w, o in zip(weights, offsets)]
                    current = load(b, y.ptr, y.dtype, slot_of(channel))
                    if is_max:
                        for term in terms:
                            current = b.select(b.fcmp_ordered(">", term, current), term, current)
                    else:
                        total = terms[0]
                        for term in terms[1:]:
                            total = b.fadd(total, term)
                        current = b.fadd(current, total)
                    store(b, current, y.ptr, y.dtype, slot_of(channel))
        if not is_max:
            with for_range(b, 0, channels, name="average") as channel:
                slot = slot_of(channel)
                store(b, b.fdiv(load(b, y.ptr, y.dtype, slot), sampler.count), y.ptr, y.dtype, slot)


def _rows(graph: Graph, node: Node) -> int:
    regions, channels, bins_high, bins_wide = node.outputs[0].shape
    return regions * bins_high if channels * bins_wide else 0


register_kernel(KernelSpec(("RoiAlign",), _check, _rows, _emit))
