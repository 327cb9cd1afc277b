"""Softmax, LogSoftmax, BatchNormalization, LayerNormalization, InstanceNormalization, LRN.

All but LRN run on the kept × reduced loop nest: statistics are gathered per column in
Scratch values over the normalized axes (in the tensor dtype; mean, then variance around it,
like the ONNX reference), then a last sweep writes the output elements.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, element_type, for_range, load, store
from compiler.codegen.llvm.kernels.axis_loops import (REASSOCIATE, AxisSplit, Cell, Scratch, Segment, emit_segments,
                                                      split_axes)
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic, select_max
from compiler.codegen.llvm.kernels.reduction import FLOATS, dtype_problem, lowest
from compiler.codegen.llvm.kernels.registry import EXTENT_REDUCED, KernelContext, KernelSpec, TensorArg, register_kernel
from compiler.codegen.llvm.kernels.vector_math import exp, log
from compiler.ir.graph import Graph, Node, Value
from compiler.ops.nn import lrn_window


def _rank(graph: Graph, node: Node) -> int:
    return len(graph.input_types(node)[0].shape)


def _float_inputs_problem(node: Node, input_types: list, min_rank: int) -> str | None:
    """Every present input must be float32/float64 like X, and X of rank >= min_rank."""
    types = [t for t in input_types if t is not None]
    problem = dtype_problem(node, types[0].dtype, FLOATS)
    if problem:
        return problem
    if any(t.dtype != types[0].dtype for t in types):
        dtypes = ", ".join(t.dtype for t in types)
        return f"{node.op_type} with inputs of mixed dtypes ({dtypes}) is not compiled by the cpu target"
    if len(types[0].shape) < min_rank:
        return f"{node.op_type} needs an input of rank >= {min_rank}"
    return None


def extra_outputs_used(graph: Graph, node: Node) -> bool:
    """Whether an output after the first (MaxPool's Indices, LayerNormalization's statistics) is read."""
    values = [Value(node.name, index) for index in range(1, len(node.outputs))]
    return any(graph.uses(value) or graph.is_graph_output(value) for value in values)


def _load(b: ir.IRBuilder, tensor: TensorArg, index: ir.Value) -> ir.Value:
    return load(b, tensor.ptr, tensor.dtype, index)


def _channel(b: ir.IRBuilder, cell: Cell, channels: int) -> ir.Value:
    """Axis-1 index of a column when the kept dims are (N, C)."""
    return b.urem(cell.kept, const_i64(channels))


# ----- Softmax / LogSoftmax -------------------------------------------------------------------
def _softmax_split(graph: Graph, node: Node) -> AxisSplit:
    shape = graph.input_types(node)[0].shape
    return split_axes(shape, [node.attrs.get("axis", -1) % len(shape)])


def softmax_problem(node: Node, input_types: list) -> str | None:
    """Why a Softmax/LogSoftmax `node` reading `input_types` is not compiled; None when it is."""
    rank, axis = len(input_types[0].shape), node.attrs.get("axis", -1)
    if not -rank <= axis < rank:
        return f"{node.op_type} axis {axis} is out of range for rank {rank}"
    return _float_inputs_problem(node, input_types, 1)


def softmax_item(b: ir.IRBuilder, split: AxisSplit, x: TensorArg, y: TensorArg,
                 log_softmax: bool, length: ir.Value | None = None) -> Callable[[Segment], None]:
    """The sweeps of one work item: exp(x - max) * (1 / sum), or (x - max) - log(sum); the max is
    subtracted first so exp cannot overflow, and the sum is inverted once per column (a multiply per
    element is several times cheaper than a divide). Each element of x is read before y's is written,
    so x may be y. With `length` (a dynamic extent along the one reduced axis), the elements from it on
    count as -inf: they are not read, and come out 0 (log: -inf)."""
    value_type = element_type(x.dtype)
    peak, total = Scratch(b, split, value_type), Scratch(b, split, value_type)

    def start(cell: Cell) -> None:
        peak.store(cell, lowest(value_type, "float"))
        total.store(cell, float_constant(value_type, 0.0))

    def exponentiate(cell: Cell) -> None:
        exponential = exp(b, b.fsub(_load(b, x, cell.offset), peak.load(cell)))
        if not log_softmax:
            store(b, exponential, y.ptr, y.dtype, cell.offset)
        total.store(cell, b.fadd(total.load(cell), exponential, flags=REASSOCIATE))

    def finish_total(cell: Cell) -> None:
        total.store(cell, log(b, total.load(cell)) if log_softmax
                    else b.fdiv(float_constant(value_type, 1.0), total.load(cell)))

    def write(cell: Cell) -> None:
        if log_softmax:
            result = b.fsub(b.fsub(_load(b, x, cell.offset), peak.load(cell)), total.load(cell))
        else:
            result = b.fmul(_load(b, y, cell.offset), total.load(cell))
        store(b, result, y.ptr, y.dtype, cell.offset)

    def find_max(cell: Cell) -> None:
        peak.store(cell, select_max(b, peak.load(cell), _load(b, x, cell.offset), "float"))

    def vanished(cell: Cell) -> None:
        store(b, float_constant(value_type, float("-inf") if log_softmax else 0.0), y.ptr, y.dtype, cell.offset)

    def item(segment: Segment) -> None:
        segment.columns(start)
        segment.sweep(find_max, stop=length)
        segment.sweep(exponentiate, stop=length)
        segment.columns(finish_total)
        segment.sweep(write, stop=length)
        if length is not None:
            segment.sweep(vanished, start=length)

    return item


def _emit_softmax(ctx: KernelContext) -> None:
    split = _softmax_split(ctx.graph, ctx.node)
    length = ctx.extent if ctx.node.attrs.get(EXTENT_REDUCED) and len(split.reduced) == 1 else None
    item = softmax_item(ctx.builder, split, ctx.inputs[0], ctx.outputs[0], ctx.node.op_type == "LogSoftmax", length)
    emit_segments(ctx.builder, split, ctx.begin, ctx.end, item)


register_kernel(KernelSpec(("Softmax", "LogSoftmax"),
                           lambda graph, node: softmax_problem(node, graph.input_types(node)),
                           lambda graph, node: _softmax_split(graph, node).work_items, _emit_softmax,
                           batch_items=lambda graph, node, bound: _softmax_split(graph, node).batch_items(bound)))


# ----- per-column statistics ------------------------------------------------------------------
def _emit_mean_and_variance(b: ir.IRBuilder, segment: Segment, x: TensorArg, mean: Scratch, variance: Scratch) -> None:
    """mean and (population) variance of each column's reduced set: two passes, the variance around the mean."""
    value_type = mean.value_type
    count = float_constant(value_type, segment.split.reduced_count)

    def start(cell: Cell) -> None:
        mean.store(cell, float_constant(value_type, 0.0))
        variance.store(cell, float_constant(value_type, 0.0))

    def square_deviation(cell: Cell) -> None:
        deviation = b.fsub(_load(b, x, cell.offset), mean.load(cell))
        variance.store(cell, b.fadd(variance.load(cell), b.fmul(deviation, deviation), flags=REASSOCIATE))

    segment.columns(start)
    segment.sweep(lambda cell: mean.store(cell, b.fadd(mean.load(cell), _load(b, x, cell.offset), flags=REASSOCIATE)))
    segment.columns(lambda cell: mean.store(cell, b.fdiv(mean.load(cell), count)))
    segment.sweep(square_deviation)
    segment.columns(lambda cell: variance.store(cell, b.fdiv(variance.load(cell), count)))


def _emit_moments(b: ir.IRBuilder, segment: Segment, x: TensorArg, mean: Scratch, inverse_std: Scratch,
                  epsilon: float) -> None:
    """mean and 1 / sqrt(variance + epsilon) of each column's reduced set."""
    value_type = mean.value_type

    def invert(cell: Cell) -> None:
        std = intrinsic(b, "sqrt", b.fadd(inverse_std.load(cell), float_constant(value_type, epsilon)))
        inverse_std.store(cell, b.fdiv(float_constant(value_type, 1.0), std))

    _emit_mean_and_variance(b, segment, x, mean, inverse_std)
    segment.columns(invert)



# ----- BatchNormalization ---------------------------------------------------------------------
def _channel_split(graph: Graph, node: Node) -> AxisSplit:
    """Kept (N, C), reduced spatial dims: the split of the per-channel ops."""
    return split_axes(graph.input_types(node)[0].shape, range(2, _rank(graph, node)))


def _training(node: Node) -> bool:
    return bool(node.attrs.get("training_mode", 0))


def _check_batch_normalization(graph: Graph, node: Node) -> str | None:
    if len(node.outputs) > 1 and not _training(node):
        return ("BatchNormalization with statistics outputs but no training_mode=1 (before opset 14) "
                "is not compiled by the cpu target")
    if len(node.outputs) > 3:
        return "BatchNormalization with saved mean/variance outputs is not compiled by the cpu target"
    if not node.attrs.get("spatial", 1):
        return "BatchNormalization with spatial=0 is not compiled by the cpu target"
    return _float_inputs_problem(node, graph.input_types(node), 2)


def _emit_batch_normalization(ctx: KernelContext) -> None:
    """y = (x - mean[c]) * (scale[c] / sqrt(var[c] + epsilon)) + bias[c], channel factors once per column."""
    b, (x, scale, bias, mean, var), y = ctx.builder, ctx.inputs[:5], ctx.outputs[0]
    split, channels = _channel_split(ctx.graph, ctx.node), x.shape[1]
    value_type = element_type(x.dtype)
    epsilon = float_constant(value_type, ctx.node.attrs.get("epsilon", 1e-5))
    center, gain, shift = (Scratch(b, split, value_type) for _ in range(3))

    def prepare(cell: Cell) -> None:
        channel = _channel(b, cell, channels)
        std = intrinsic(b, "sqrt", b.fadd(_load(b, var, channel), epsilon))
        inverse_std = b.fdiv(float_constant(value_type, 1.0), std)
        center.store(cell, _load(b, mean, channel))
        gain.store(cell, b.fmul(_load(b, scale, channel), inverse_std))
        shift.store(cell, _load(b, bias, channel))

    def write(cell: Cell) -> None:
        centered = b.fsub(_load(b, x, cell.offset), center.load(cell))
        store(b, b.fadd(b.fmul(centered, gain.load(cell)), shift.load(cell)), y.ptr, y.dtype, cell.offset)

    def item(segment: Segment) -> None:
        segment.columns(prepare)
        segment.sweep(write)

    emit_segments(b, split, ctx.begin, ctx.end, item)


def _batch_split(graph: Graph, node: Node) -> AxisSplit:
    """Kept C, reduced N and spatial dims: the split of training mode's batch statistics."""
    return split_axes(graph.input_types(node)[0].shape, [0, *range(2, _rank(graph, node))])


def _emit_batch_normalization_training(ctx: KernelContext) -> None:
    """Training mode: y = (x - mean) * (scale[c] / sqrt(var + epsilon)) + bias[c] with the batch's
    mean and (population) variance per channel; the running statistics outputs are
    input * momentum + batch * (1 - momentum)."""
    b, (x, scale, bias, mean_in, var_in), y = ctx.builder, ctx.inputs[:5], ctx.outputs[0]
    split, attrs = _batch_split(ctx.graph, ctx.node), ctx.node.attrs
    value_type = element_type(x.dtype)
    momentum = attrs.get("momentum", float(np.float32(0.9)))
    mean, gain = Scratch(b, split, value_type), Scratch(b, split, value_type)

    def finish(cell: Cell) -> None:
        channel, variance = cell.kept, gain.load(cell)
        for output, running, batch in zip(ctx.outputs[1:], (mean_in, var_in), (mean.load(cell), variance)):
            updated = b.fadd(b.fmul(_load(b, running, channel), float_constant(value_type, momentum)),
                             b.fmul(batch, float_constant(value_type, 1 - momentum)))
            store(b, updated, output.ptr, output.dtype, channel)
        std = intrinsic(b, "sqrt", b.fadd(variance, float_constant(value_type, attrs.get("epsilon", 1e-5))))
        gain.store(cell, b.fdiv(_load(b, scale, channel), std))

    def write(cell: Cell) -> None:
        centered = b.fsub(_load(b, x, cell.offset), mean.load(cell))
        store(b, b.fadd(b.fmul(centered, gain.load(cell)), _load(b, bias, cell.kept)), y.ptr, y.dtype, cell.offset)

    def item(segment: Segment) -> None:
        _emit_mean_and_variance(b, segment, x, mean, gain)
        segment.columns(finish)
        segment.sweep(write)

    emit_segments(b, split, ctx.begin, ctx.end, item)


def _batch_normalization_items(graph: Graph, node: Node) -> int:
    return (_batch_split if _training(node) else _channel_split)(graph, node).work_items


register_kernel(KernelSpec(("BatchNormalization",), _check_batch_normalization, _batch_normalization_items,
                           lambda ctx: (_emit_batch_normalization_training if _training(ctx.node)
                                        else _emit_batch_normalization)(ctx)))


# ----- LayerNormalization / InstanceNormalization ---------------------------------------------
def _layer_axis(graph: Graph, node: Node) -> int:
    return node.attrs.get("axis", -1) % _rank(graph, node)


def _layer_split(graph: Graph, node: Node) -> AxisSplit:
    return split_axes(graph.input_types(node)[0].shape, range(_layer_axis(graph, node), _rank(graph, node)))


def _without_leading_ones(dims) -> tuple[int, ...]:
    dims = tuple(dims)
    while dims and dims[0] == 1:
        dims = dims[1:]
    return dims


def per_normalized_element(shape, normalized) -> bool:
    """Scale/B either holds one value per normalized element or a single value."""
    return math.prod(shape) == 1 or _without_leading_ones(shape) == _without_leading_ones(normalized)


def layer_normalization_problem(node: Node, input_types: list) -> str | None:
    """Why a LayerNormalization `node` reading `input_types` is not compiled (its Y output); None when it is."""
    rank, axis = len(input_types[0].shape), node.attrs.get("axis", -1)
    if not -rank <= axis < rank:
        return f"LayerNormalization axis {axis} is out of range for rank {rank}"
    if node.attrs.get("stash_type", 1) != 1:
        return "LayerNormalization with stash_type != 1 (float32 statistics) is not compiled by the cpu target"
    normalized = input_types[0].shape[axis % rank:]
    if not all(per_normalized_element(t.shape, normalized) for t in input_types[1:] if t is not None):
        return "LayerNormalization with Scale/B broadcast along some normalized axes is not compiled by the cpu target"
    return _float_inputs_problem(node, input_types, 1)


def _check_layer_normalization(graph: Graph, node: Node) -> str | None:
    if extra_outputs_used(graph, node):
        return "LayerNormalization's Mean and InvStdDev outputs are not compiled by the cpu target (only Y)"
    return layer_normalization_problem(node, graph.input_types(node))


def layer_normalization_item(b: ir.IRBuilder, split: AxisSplit, x: TensorArg, y: TensorArg, scale: TensorArg,
                             bias: TensorArg | None, epsilon: float) -> Callable[[Segment], None]:
    """The sweeps of one work item: y = (x - mean) * inverse_std * scale[p] + bias[p], p the element's
    place in the normalized axes. Each element of x is read before y's is written, so x may be y."""
    mean, inverse_std = Scratch(b, split, element_type(x.dtype)), Scratch(b, split, element_type(x.dtype))

    def parameter(tensor: TensorArg, cell: Cell) -> ir.Value:
        return _load(b, tensor, cell.position if tensor.size > 1 else const_i64(0))

    def write(cell: Cell) -> None:
        normalized = b.fmul(b.fsub(_load(b, x, cell.offset), mean.load(cell)), inverse_std.load(cell))
        result = b.fmul(normalized, parameter(scale, cell))
        if bias is not None:
            result = b.fadd(result, parameter(bias, cell))
        store(b, result, y.ptr, y.dtype, cell.offset)

    def item(segment: Segment) -> None:
        _emit_moments(b, segment, x, mean, inverse_std, epsilon)
        segment.sweep(write)

    return item


def _emit_layer_normalization(ctx: KernelContext) -> None:
    inputs, split = ctx.inputs, _layer_split(ctx.graph, ctx.node)
    item = layer_normalization_item(ctx.builder, split, inputs[0], ctx.outputs[0], inputs[1],
                                    inputs[2] if len(inputs) > 2 else None, ctx.node.attrs.get("epsilon", 1e-5))
    emit_segments(ctx.builder, split, ctx.begin, ctx.end, item)


register_kernel(KernelSpec(("LayerNormalization",), _check_layer_normalization,
                           lambda graph, node: _layer_split(graph, node).work_items, _emit_layer_normalization,
                           batch_items=lambda graph, node, bound: _layer_split(graph, node).batch_items(bound)))


def _emit_instance_normalization(ctx: KernelContext) -> None:
    """y = (x - mean) * (inverse_std * scale[c]) + bias[c] with statistics per (n, c)."""
    b, (x, scale, bias), y = ctx.builder, ctx.inputs[:3], ctx.outputs[0]
    split, channels = _channel_split(ctx.graph, ctx.node), x.shape[1]
    mean, gain = Scratch(b, split, element_type(x.dtype)), Scratch(b, split, element_type(x.dtype))

    def write(cell: Cell) -> None:
        centered = b.fsub(_load(b, x, cell.offset), mean.load(cell))
        store(b, b.fadd(b.fmul(centered, gain.load(cell)), _load(b, bias, _channel(b, cell, channels))),
              y.ptr, y.dtype, cell.offset)

    def scale_gain(cell: Cell) -> None:
        gain.store(cell, b.fmul(gain.load(cell), _load(b, scale, _channel(b, cell, channels))))

    def item(segment: Segment) -> None:
        _emit_moments(b, segment, x, mean, gain, ctx.node.attrs.get("epsilon", 1e-5))
        segment.columns(scale_gain)
        segment.sweep(write)

    emit_segments(b, split, ctx.begin, ctx.end, item)


register_kernel(KernelSpec(("InstanceNormalization",),
                           lambda graph, node: _float_inputs_problem(node, graph.input_types(node), 2),
                           lambda graph, node: _channel_split(graph, node).work_items, _emit_instance_normalization))


# ----- LRN ------------------------------------------------------------------------------------
def lrn_scaled(b: ir.IRBuilder, value: ir.Value, base: ir.Value, beta: float) -> ir.Value:
    """value / base ** beta. beta = 0.75 (every LRN of the model zoo) takes two square roots and a division,
    0.56x the time of exp and log (Inception-v1's LRNs); other float32 betas multiply by exp(-beta * log(base)),
    which has no calls, so the plane loop vectorizes (libm's powf ran one element at a time and made LRN a top
    kernel of AlexNet and ZFNet); float64 keeps pow."""
    if beta == 0.75:
        root = intrinsic(b, "sqrt", base)
        return b.fdiv(value, b.fmul(root, intrinsic(b, "sqrt", root)))
    if base.type != ir.FloatType():
        return b.fdiv(value, intrinsic(b, "pow", base, float_constant(base.type, beta)))
    return b.fmul(value, exp(b, b.fmul(float_constant(base.type, -beta), log(b, base))))


def _emit_lrn(ctx: KernelContext) -> None:
    """One work item per (n, c) plane: y accumulates the window's squares along C, then
    y = x / (bias + alpha / size * y) ** beta; every loop runs over the contiguous plane."""
    b, x, y, attrs = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node.attrs
    channels, plane = x.shape[1], math.prod(x.shape[2:])
    size = attrs["size"]
    value_type = element_type(x.dtype)
    with for_range(b, ctx.begin, ctx.end, name="plane") as index:
        channel = b.urem(index, const_i64(channels))
        image_start = b.mul(b.sub(index, channel), const_i64(plane))
        out_start = b.mul(index, const_i64(plane))
        before, after = lrn_window(size)
        low = b.sub(channel, const_i64(before))
        low = b.select(b.icmp_signed("<", low, const_i64(0)), const_i64(0), low)
        high = b.add(channel, const_i64(after + 1))
        high = b.select(b.icmp_signed(">", high, const_i64(channels)), const_i64(channels), high)
        with for_range(b, 0, plane, name="zero") as i:
            store(b, float_constant(value_type, 0.0), y.ptr, y.dtype, b.add(out_start, i))
        with for_range(b, low, high, name="window") as neighbour:
            source = b.add(image_start, b.mul(neighbour, const_i64(plane)))
            with for_range(b, 0, plane, name="square") as i:
                value = _load(b, x, b.add(source, i))
                target = b.add(out_start, i)
                store(b, b.fadd(_load(b, y, target), b.fmul(value, value)), y.ptr, y.dtype, target)
        with for_range(b, 0, plane, name="scale") as i:
            target = b.add(out_start, i)
            sum_term = b.fmul(float_constant(value_type, attrs.get("alpha", 1e-4) / size), _load(b, y, target))
            base = b.fadd(float_constant(value_type, attrs.get("bias", 1.0)), sum_term)
            store(b, lrn_scaled(b, _load(b, x, target), base, attrs.get("beta", 0.75)), y.ptr, y.dtype, target)


def _check_lrn(graph: Graph, node: Node) -> str | None:
    if node.attrs.get("size", 0) < 1:
        return "LRN needs a positive size attribute"
    return _float_inputs_problem(node, graph.input_types(node), 2)


register_kernel(KernelSpec(("LRN",), _check_lrn,
                           lambda graph, node: math.prod(graph.input_types(node)[0].shape[:2]), _emit_lrn))
