"""Convolutions and pools over dynamic dims (compiler/extent_types.py): an image's height and width,
say, each padded to its bound.

A convolution computes an output position from a window of input positions. At the bound its valid
outputs read the padding where the true computation reads its own zero padding at the end, so the
input reads 0 there (kiln::MaskTail), and the output holds the dim with one more step: (pads, span,
stride) turn size s into (s + pads - span) // stride + 1 valid positions. A MaxPool reads -inf there
(and with ceil_mode rounds the count up). Global pools reduce the dim away: GlobalMaxPool after a
-inf mask, GlobalAveragePool after a 0 mask and then a kiln::ExtentScale that turns the mean over
the bound into the mean over the valid positions. AveragePool and LpPool windows count the
positions they cover, which differ at the edge, and padding that depends on the size (auto_pad
SAME with a stride) moves every window: both are refused.
"""

from __future__ import annotations

import math

from compiler.extent_types import Effect, Extent, ExtentProblem, Mask, Op, aligned, no_extent_in, union
from compiler.ir.graph import Value

PER_CHANNEL = ("BatchNormalization", "LRN")
"""Per-image ops that keep every position apart (LRN mixes neighbouring channels only)."""


def _window(op: Op, axis: int, kernel: int) -> tuple[int, int, int, int]:
    """(pads at the start, pads at the end, span, stride) of spatial `axis` of the node's window."""
    node, index = op.node, axis - 2
    spatial = len(op.shape(0)) - 2
    stride = int((node.attrs.get("strides") or [1] * spatial)[index])
    dilation = int((node.attrs.get("dilations") or [1] * spatial)[index])
    span = dilation * (kernel - 1) + 1
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if stride != 1:
            raise ExtentProblem(f"auto_pad {auto_pad} with stride {stride} pads by an amount that depends on the "
                                "size; give explicit pads")
        total = span - 1
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        return begin, total - begin, span, stride
    pads = [0] * (2 * spatial) if auto_pad == "VALID" else node.attrs.get("pads") or [0] * (2 * spatial)
    return int(pads[index]), int(pads[index + spatial]), span, stride


def _windowed(op: Op, kernels: list[int], fill: float, ceil: bool = False) -> Effect:
    """A Conv or MaxPool over input 0: batch and (for pools) channels pass, spatial axes take a step."""
    outputs, masks = [], []
    for held in op.axes[0]:
        if held.axis < 2:
            outputs.append(held)
            continue
        if held.inner != 1:
            raise ExtentProblem("it slides a window over a dynamic dim merged with another")
        begin, end, span, stride = _window(op, held.axis, kernels[held.axis - 2])
        extent = held.extent.then(begin + end, span, stride, ceil)
        if op.bound(extent) != op.out_shape[held.axis]:
            raise ExtentProblem(f"its output size along axis {held.axis} is not the window formula's")
        if op.low(extent) < 1:
            raise ExtentProblem(f"at the dim's lower bound its output has no positions along axis {held.axis}; "
                                "raise the lower bound")
        outputs.append(held._replace(extent=extent))
        reach = _overhang(op, held.extent, begin, end, span, stride, ceil)
        if reach:
            masks.append(Mask(0, held.axis, 1, fill, held.extent, reach))
    return Effect([union(op, outputs)], masks)


def _overhang(op: Op, extent: Extent, begin: int, end: int, span: int, stride: int, ceil: bool) -> int:
    """How far past the valid input positions the windows of the valid outputs reach, at most over the
    sizes the dim may take (what a mask must fill: the true computation reads padding there)."""
    low, high = op.dims[extent.dim]
    window = Extent(0, ((begin + end, span, stride, ceil),))
    return max(0, *((window.size(size) - 1) * stride - begin + span - size
                    for size in {extent.size(s) for s in range(low, high + 1)}))


def _conv(op: Op) -> Effect:
    """Conv, and kiln::FusedConv (X, W, B, then the epilogue's operands, elementwise with the output)."""
    no_extent_in(op, [1, 2], "weights or bias")
    if any(held.axis == 1 for held in op.axes[0]):
        raise ExtentProblem("it sums over channels that hold the dynamic dim")
    kernels = op.node.attrs.get("kernel_shape") or op.shape(1)[2:]  # transposed weights keep kernel_shape
    effect = _windowed(op, [int(k) for k in kernels], 0.0)
    if op.node.op_type == "FusedConv":
        effect.outputs = [union(op, effect.outputs[0] | aligned(op, range(3, len(op.axes))))]
    return effect


def _max_pool(op: Op) -> Effect:
    if len(op.node.outputs) > 1 and op.graph.uses(Value(op.node.name, 1)):
        raise ExtentProblem("its Indices output numbers elements at the bound's layout")
    kernels = [int(k) for k in op.node.attrs["kernel_shape"]]
    effect = _windowed(op, kernels, -math.inf, bool(op.node.attrs.get("ceil_mode", 0)))
    effect.outputs = effect.outputs * len(op.node.outputs)
    return effect


def _global_pool(op: Op) -> Effect:
    """GlobalMaxPool / GlobalAveragePool: the spatial axes reduce to 1, read masked; an average is rescaled
    (Effect.rescale) from the bound's count to the valid positions'."""
    spatial = [held for held in op.axes[0] if held.axis >= 2]
    if any(held.inner != 1 for held in spatial):
        raise ExtentProblem("it pools a dynamic dim merged with another")
    average = op.node.op_type == "GlobalAveragePool"
    masks = [Mask(0, held.axis, 1, 0.0 if average else -math.inf, held.extent) for held in sorted(spatial)]
    kept = frozenset(held for held in op.axes[0] if held.axis < 2)
    return Effect([kept], masks, rescale=[held.extent for held in sorted(spatial)] if average else [])


def _per_channel(op: Op) -> Effect:
    no_extent_in(op, range(1, len(op.axes)), "parameters")
    if op.node.op_type == "LRN" and any(held.axis == 1 for held in op.axes[0]):
        raise ExtentProblem("it mixes neighbouring channels, which hold the dynamic dim")
    return Effect([op.axes[0]] * len(op.node.outputs))


def _refused(op: Op) -> Effect:
    if any(held.axis != 0 for index in range(len(op.axes)) for held in op.axes[index]):
        raise ExtentProblem(f"{op.node.op_type} over a dynamic dim would count or move the padding")
    no_extent_in(op, range(1, len(op.axes)), "parameters")
    return Effect([op.axes[0]] * len(op.node.outputs))


IMAGE_RULES = {
    "Conv": _conv, "FusedConv": _conv, "MaxPool": _max_pool,
    "GlobalMaxPool": _global_pool, "GlobalAveragePool": _global_pool,
    **{name: _per_channel for name in PER_CHANNEL},
    **{name: _refused for name in ("AveragePool", "LpPool", "GlobalLpPool", "InstanceNormalization", "DepthToSpace",
                                   "SpaceToDepth", "ConvTranspose", "ConvInteger", "QLinearConv", "QuantizedConv")},
}
