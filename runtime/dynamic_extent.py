"""A dynamic extent at run time (manifest `dynamic_extent`, written by compiler/dynamic_extent.py): which
inputs and outputs hold the dim on which axis, the buffer shapes at its bound, the extent of a call,
inputs staged into zero-filled buffers of the bound and outputs cut to the extent. The executor keeps
one set of output buffers of the bound per thread: allocating megabytes a call, to return a few rows
of them, cost more than a short extent's kernels (fresh pages fault in on first touch).
"""

from __future__ import annotations

import numpy as np


class ExtentPlan:
    def __init__(self, manifest: dict):
        spec = manifest["dynamic_extent"]
        self.bound: int = spec["max"]
        self.input_axes = [spec["inputs"].get(entry["name"]) for entry in manifest["inputs"]]
        self.output_axes = [spec["outputs"].get(entry["name"]) for entry in manifest["outputs"]]

    @classmethod
    def of(cls, manifest: dict) -> "ExtentPlan | None":
        return cls(manifest) if manifest.get("dynamic_extent") else None

    def compiled(self, shapes: list[list], axes: list[int | None]) -> list[list]:
        """The buffer shapes: `shapes` with each dynamic axis at the bound."""
        return [shape if axis is None else [*shape[:axis], self.bound, *shape[axis + 1:]]
                for shape, axis in zip(shapes, axes)]

    def extent_of(self, inputs: list) -> int:
        """The extent of a call (the caller checked it against the bounds)."""
        return next(value.shape[axis] for axis, value in zip(self.input_axes, inputs) if axis is not None)

    def padded(self, value: np.ndarray, axis: int) -> np.ndarray:
        """`value` padded with zeros to the bound along `axis` (the gpu stages inputs so, whatever the batch)."""
        return self.stage(value, np.empty((*value.shape[:axis], self.bound, *value.shape[axis + 1:]), value.dtype))

    def stage(self, value: np.ndarray, buffer: np.ndarray) -> np.ndarray:
        """`value` at the start of `buffer` (a buffer of the bounds), zeros elsewhere: padding the kernels read
        as valid numbers (a zero index, a zero mask)."""
        buffer.fill(0)
        buffer[tuple(slice(0, size) for size in value.shape)] = value
        return buffer

    def cut(self, outputs: list, extent: int) -> list:
        """The outputs at the call's extent, copied from buffers of the bound (which the next call reuses)."""
        return [np.array(output if axis is None else output[(slice(None),) * axis + (slice(0, extent),)])
                for axis, output in zip(self.output_axes, outputs)]
