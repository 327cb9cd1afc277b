"""What the dynamic-extent rules (compiler/extent_rules.py) speak of: where a value holds a dynamic dim,
how many of its positions are valid at a given size, and what a node needs masked.

A value holds a dynamic dim as a set of Held(axis, inner, extent): along `axis`, index i is position
(i // inner) % bound of it, and positions from extent.size(s) on are padding, s being the size the dim
has in a call. A plain dim is Held(axis, 1, Extent(dim)); a Reshape of [B, S, H] to [B*S, H] holds it
on axis 0; scores [B, h, S, S] hold it twice. Convolutions and pools change how many positions are
valid: their output's Extent adds a step (total pads, kernel span, stride, ceil) applied to the size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType


class ExtentProblem(Exception):
    """Why a node cannot run with a dynamic dim padded to its bound."""


@dataclass(frozen=True)
class Extent:
    """The valid positions along a held axis: dynamic dim `dim`'s size passed through `steps`, each
    (total pads, kernel span, stride, ceil mode) of a convolution or pool on the way."""

    dim: int = 0
    steps: tuple[tuple[int, int, int, bool], ...] = ()

    def size(self, s: int) -> int:
        for pads, span, stride, ceil in self.steps:
            reach = s + pads - span
            s = (-(-reach // stride) if ceil else reach // stride) + 1
        return s

    def then(self, pads: int, span: int, stride: int, ceil: bool = False) -> "Extent":
        if span == 1 + pads and stride == 1:  # a window that keeps every size (a 1x1 convolution)
            return self
        return Extent(self.dim, self.steps + ((pads, span, stride, ceil),))

    def same(self, other: "Extent", dims: tuple[tuple[int, int], ...]) -> bool:
        """Whether both give the same valid positions at every size their dim may take (`dims`: bounds)."""
        if self == other:
            return True
        low, high = dims[self.dim]
        return self.dim == other.dim and all(self.size(s) == other.size(s) for s in range(low, high + 1))

    def to_json(self) -> list:
        return [self.dim, [list(step) for step in self.steps]]

    @classmethod
    def from_json(cls, value) -> "Extent":
        return cls(int(value[0]), tuple((int(p), int(k), int(s), bool(c)) for p, k, s, c in value[1]))


FIRST = Extent(0)
"""The first dynamic dim, unchanged by windows (a sequence length): the one kernels can stop at."""


class Held(NamedTuple):
    axis: int
    inner: int
    extent: Extent


@dataclass(frozen=True)
class Mask:
    """Input `input` must read the positions past `extent` along (axis, inner) as `fill`: the first `reach`
    of them (a window's overhang past the valid positions), or all (None)."""

    input: int
    axis: int
    inner: int
    fill: float
    extent: Extent
    reach: int | None = None


@dataclass
class Effect:
    """What a node's outputs hold, the masks its inputs need, and (a mean over dynamic dims) the extents whose
    valid counts its output must be rescaled to (kiln::ExtentScale)."""

    outputs: list[frozenset]
    masks: list[Mask] = field(default_factory=list)
    rescale: list[Extent] = field(default_factory=list)


NONE: frozenset = frozenset()


@dataclass(frozen=True)
class Op:
    """What a rule sees: the node, what each input holds, and each dynamic dim's (low, high) bounds."""

    graph: Graph
    node: Node
    axes: list[frozenset]
    dims: tuple[tuple[int, int], ...]

    def shape(self, index: int) -> tuple[int, ...]:
        return _static(self.graph.input_types(self.node)[index], f"input {index}")

    @property
    def out_shape(self) -> tuple[int, ...]:
        return _static(self.node.outputs[0], "the output")

    def axis(self, rank: int, default: int, name: str = "axis") -> int:
        axis = int(self.node.attrs.get(name, default))
        return axis + rank if axis < 0 else axis

    def constant(self, index: int) -> np.ndarray | None:
        values = self.graph.input_values(self.node)
        return None if index >= len(values) or values[index] is None else self.graph.constant_value(values[index])

    def bound(self, extent: Extent) -> int:
        """The positions compiled for: the extent at its dim's upper bound."""
        return extent.size(self.dims[extent.dim][1])

    def low(self, extent: Extent) -> int:
        return extent.size(self.dims[extent.dim][0])

    def same(self, first: Extent, second: Extent) -> bool:
        return first.same(second, self.dims)

    def on_axis(self, index: int, axis: int) -> list[Held]:
        return [held for held in self.axes[index] if held.axis == axis]


def _static(value_type, what: str) -> tuple[int, ...]:
    if not isinstance(value_type, TensorType) or not value_type.is_static:
        raise ExtentProblem(f"{what} has no static shape ({value_type}) at the bound")
    return tuple(value_type.shape)


def union(op: Op, helds) -> frozenset:
    """The helds, one per (axis, inner): operands meeting there must agree on their valid positions."""
    result: dict[tuple[int, int], Held] = {}
    for held in helds:
        first = result.setdefault((held.axis, held.inner), held)
        if not op.same(first.extent, held.extent):
            raise ExtentProblem(f"its operands have different valid sizes along axis {held.axis}")
    return frozenset(result.values())


def aligned(op: Op, indices, out_shape: tuple[int, ...] | None = None) -> frozenset:
    """What inputs `indices` hold, broadcast (right-aligned) to the output shape."""
    out_shape = op.out_shape if out_shape is None else out_shape
    helds = []
    for index in indices:
        shape = op.shape(index)
        shift = len(out_shape) - len(shape)
        for held in op.axes[index]:
            if shape[held.axis] != out_shape[held.axis + shift]:
                raise ExtentProblem(f"input {index} broadcasts the dynamic dim (shape {list(shape)}) into "
                                    f"{list(out_shape)}")
            helds.append(held._replace(axis=held.axis + shift))
    return union(op, helds)


def no_extent_in(op: Op, indices, what: str) -> None:
    for index in indices:
        if index < len(op.axes) and op.axes[index]:
            raise ExtentProblem(f"its {what} (input {index}) depends on the dynamic dim")


def kept(axes: frozenset, removed: set[int], keepdims: bool) -> frozenset:
    """What a reduction over `removed` keeps holding (its axes renumbered without keepdims)."""
    if keepdims:
        return frozenset(held for held in axes if held.axis not in removed)
    return frozenset(held._replace(axis=held.axis - sum(1 for r in removed if r < held.axis))
                     for held in axes if held.axis not in removed)


def flat_stride(shape, axis: int, inner: int) -> int:
    return inner * math.prod(shape[axis + 1:])
