"""Dynamic extents at run time (manifest `dynamic_extent`, written by compiler/dynamic_extent.py): which
inputs and outputs hold which dynamic dims on which axes, the buffer shapes at the bounds, the sizes of
a call, inputs staged into zero-filled buffers of the bounds and outputs cut to their valid sizes. An
output axis a window went over (a convolution's) holds (size + pads - span) // stride + 1 valid
positions per step of its extent (compiler/extent_types.Extent.size, restated in `_valid`: the runtime
imports nothing of the compiler). The cpu executor keeps one set of output buffers of the bounds per
thread rather than allocating them at every call; results are copies cut from them.
"""

from __future__ import annotations

import numpy as np


def _valid(extent: list, size: int) -> int:
    """compiler/extent_types.Extent.size of an extent stored as JSON ([dim, steps])."""
    for pads, span, stride, ceil in extent[1]:
        reach = size + pads - span
        size = (-(-reach // stride) if ceil else reach // stride) + 1
    return size


class ExtentPlan:
    def __init__(self, manifest: dict):
        spec = manifest["dynamic_extent"]
        self.bounds: list[int] = [dim["max"] for dim in spec["dims"]]
        self.input_axes = [spec["inputs"].get(entry["name"], []) for entry in manifest["inputs"]]  # [[axis, dim]]
        self.output_axes = [spec["outputs"].get(entry["name"], []) for entry in manifest["outputs"]]  # [[axis, extent]]

    @classmethod
    def of(cls, manifest: dict) -> "ExtentPlan | None":
        return cls(manifest) if manifest.get("dynamic_extent") else None

    def input_shapes(self, shapes: list[list]) -> list[list]:
        """The input buffer shapes: `shapes` with each dynamic axis at its dim's bound."""
        return [self._at(shape, [(axis, self.bounds[dim]) for axis, dim in held])
                for shape, held in zip(shapes, self.input_axes)]

    def output_shapes(self, shapes: list[list]) -> list[list]:
        return [self._at(shape, [(axis, _valid(extent, self.bounds[extent[0]])) for axis, extent in held])
                for shape, held in zip(shapes, self.output_axes)]

    @staticmethod
    def _at(shape: list, sizes: list[tuple[int, int]]) -> list:
        shape = list(shape)
        for axis, size in sizes:
            shape[axis] = size
        return shape

    def sizes_of(self, inputs: list) -> list[int]:
        """Each dynamic dim's size in a call (the caller checked them against the bounds)."""
        sizes = [None] * len(self.bounds)
        for held, value in zip(self.input_axes, inputs):
            for axis, dim in held:
                sizes[dim] = value.shape[axis]
        return sizes

    def padded(self, value: np.ndarray, index: int) -> np.ndarray:
        """Input `index` padded with zeros to the bounds (the gpu stages inputs so, whatever the batch)."""
        shape = self._at(list(value.shape), [(axis, self.bounds[dim]) for axis, dim in self.input_axes[index]])
        return self.stage(value, np.empty(shape, value.dtype))

    @staticmethod
    def stage(value: np.ndarray, buffer: np.ndarray) -> np.ndarray:
        """`value` at the start of `buffer` (a buffer of the bounds), zeros elsewhere: padding the kernels read
        as valid numbers (a zero index, a zero mask)."""
        buffer.fill(0)
        buffer[tuple(slice(0, size) for size in value.shape)] = value
        return buffer

    def cut(self, outputs: list, sizes: list[int]) -> list:
        """The outputs at the call's sizes, copied from buffers of the bounds (which the next call reuses)."""
        results = []
        for held, output in zip(self.output_axes, outputs):
            cuts = [slice(None)] * output.ndim
            for axis, extent in held:
                cuts[axis] = slice(0, _valid(extent, sizes[extent[0]]))
            results.append(np.array(output[tuple(cuts)]))
        return results
