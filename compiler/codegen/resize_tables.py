"""Resize and Upsample sampling tables, worked out at compile time for every target.

Shapes, scales, sizes and roi are static, so each resized axis becomes constant tables: for each
output coordinate, the input coordinates of its taps (clamped into the input: the edge padding
ONNX specifies), their weights, and whether tf_crop_and_resize puts it outside the crop
(extrapolation_value there). The tables repeat onnx.reference's float64 arithmetic, so nearest
picks the same element (its cubic weights are float32-accurate only: it computes them with
cubic_coeff_a as a float32; here they stay float64). Axes left as they are (scale 1, no crop)
merge into one that is read straight through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.codegen.copy_plan import NotCompiled
from compiler.ir.graph import Graph, Node

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
POLICIES = ("stretch", "not_larger", "not_smaller")


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


def _constant(graph: Graph, node: Node, index: int, what: str) -> np.ndarray | None:
    """Constant input `index` flattened; None when it is absent or empty (ONNX's "not given")."""
    values = graph.input_values(node)
    if index >= len(values) or values[index] is None:
        return None
    array = graph.constant_value(values[index])
    if array is None:
        raise NotCompiled(f"{node.op_type} with {what} (input {index}) computed at run time is not compiled "
                          "(it sets the output shape and the sampling tables): make it a constant")
    array = np.asarray(array).reshape(-1)
    return array if array.size else None


def settings_of(node: Node) -> Settings:
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


def resized_axis(settings: Settings, size_in: int, size_out: int, scale: float, crop) -> Axis:
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


def merged_axes(geometry, shape, settings: Settings) -> list[Axis]:
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
            axes.append(resized_axis(settings, size_in, size_out, scale, crop))
    return axes if len(axes) > 1 else [Axis(1, 1), *axes]


def resized_axes(graph: Graph, node: Node, settings: Settings) -> list[Axis]:
    """The node's axes with their tables (at least two: outer axes, then the columns)."""
    x_type = graph.input_types(node)[0]
    if len(x_type.shape) == 0:
        raise NotCompiled(f"{node.op_type} needs an input of rank >= 1")
    geometry = _geometry(graph, node, settings)
    sizes = tuple(size for _, size, _ in geometry)
    if sizes != tuple(node.outputs[0].shape):
        raise NotCompiled(f"{node.op_type} output shape {node.outputs[0].shape} differs from the {sizes} its scales "
                          "or sizes give")
    return merged_axes(geometry, x_type.shape, settings)
