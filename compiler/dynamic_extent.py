"""Dynamic extents: one cpu or gpu artifact for bounded dims other than the batch, a sequence length
(`shapes={"ids": ["1..8", "1..512"]}`) or an image's height and width (`{"x": [1, 3, "32..320",
"32..320"]}`).

The graph is compiled at the bounds with each dynamic dim padded to its bound: position p along it
holds what it would at any size above p, and the positions past the valid ones are padding that no
valid output reads. That holds by itself for ops that work position by position along the dim:
elementwise ops, linear layers over other axes, softmax and normalization over other axes, views and
transposes that move the dim whole (compiler/extent_rules.py tracks where each dim is in every value,
and how many of its positions are valid after convolutions and pools: compiler/extent_types.py).
Ops that mix positions along it read it through a kiln::MaskTail, which the mask-dynamic-tails pass
puts in front: it fills the padding with what makes it vanish (-inf before a softmax or a max, 0
before a sum, a product or a convolution); a mean over an image rescales its result to the valid
count (kiln::ExtentScale). Other mixing (Concat or Slice along the dim, a mean over a sequence,
padding that depends on the size) is refused naming the node; `specialize=` compiles static parts.

Inputs with the same symbolic dim name (or, unnamed, the same axis) share a dynamic dim. At run time
the cpu entry `kiln_run_extent` takes each dim's size: the masks read them, and where the first dim
is a plain sequence, kernels stop at it (codegen/llvm/extent_marks.py, extent_launch.py). On the gpu,
masks read the sizes from the runtime's `extent` buffer and the other kernels run at the bounds. The
runtime stages inputs in zero-filled buffers of the bounds and cuts outputs to their valid sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from compiler.dynamic_batch import bounds_of
from compiler.extent_rules import SCALE_OP, is_masked, propagate
from compiler.extent_types import FIRST, Extent, ExtentProblem
from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType

EXTENT_DIM = "extent"  # a dim's name in the signature when the model does not name it
EXTENT_SINKS = {"Reshape": 1, "Expand": 1, "ConstantOfShape": 0, "Tile": 1, "Range": 1}
"""Shape operands a dim's size may reach (compiler/dynamic_batch.check_size_arithmetic): each makes
positions below it what they are at any size (Range only as its limit: 0, 1, ... up to it)."""


class DynamicExtentError(ValueError):
    """The model or the shapes asked for cannot run with a dynamic extent."""


@dataclass(frozen=True)
class ExtentDim:
    name: str
    low: int
    high: int


@dataclass(frozen=True)
class ExtentBounds:
    """The dynamic dims (each `high` is also the size compiled for) and each input's (name, axis, dim)."""

    dims: tuple[ExtentDim, ...]
    inputs: tuple[tuple[str, int, int], ...]

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        return tuple((dim.low, dim.high) for dim in self.dims)

    @classmethod
    def from_options(cls, options: dict) -> "ExtentBounds | None":
        given = options.get("dynamic_extent")
        if not given:
            return None
        return cls(tuple(ExtentDim(name, int(low), int(high)) for name, low, high in given["dims"]),
                   tuple((name, int(axis), int(dim)) for name, axis, dim in given["inputs"]))

    def option(self) -> dict:
        """The compile option (JSON) the passes and the targets read back with from_options."""
        return {"dims": [[d.name, d.low, d.high] for d in self.dims], "inputs": [list(i) for i in self.inputs]}

    def describe(self, manifest: dict, outputs: dict[str, list[tuple[int, Extent]]]) -> None:
        """Manifest: `dynamic_extent` (the dims, the axes of each input and output holding one), and those axes
        in the signature as the dim's name with its bounds (runtime/signature.py); an output axis whose valid
        size a window changed is named with a prime."""
        held_inputs: dict[str, list] = {}
        for name, axis, dim in self.inputs:
            held_inputs.setdefault(name, []).append([axis, dim])
        manifest["dynamic_extent"] = {
            "dims": [{"name": d.name, "min": d.low, "max": d.high} for d in self.dims], "inputs": held_inputs,
            "outputs": {name: [[axis, extent.to_json()] for axis, extent in held] for name, held in outputs.items()}}
        marked = [(entry, [(axis, Extent(dim)) for axis, dim in held_inputs[entry["name"]]])
                  for entry in manifest["inputs"] if entry["name"] in held_inputs]
        marked += [(entry, outputs[entry["name"]]) for entry in manifest["outputs"] if entry["name"] in outputs]
        for entry, held in marked:
            shape = entry["type"]["shape"]
            bounds = entry.get("bounds") or [None] * len(shape)
            for axis, extent in held:
                dim = self.dims[extent.dim]
                shape[axis] = dim.name + ("'" if extent.steps else "")
                bounds[axis] = [extent.size(dim.low), extent.size(dim.high)]
            entry["bounds"] = bounds


def split_extent(shapes: Mapping[str, Sequence] | None, graph: Graph | None = None
                 ) -> tuple[dict | None, ExtentBounds | None]:
    """(the shapes with the dynamic dims past axis 0 at their upper bounds, their bounds or None). Inputs
    share a dim where `graph` declares the same symbolic name there (else where they give the same axis);
    a shared dim has the same bounds everywhere."""
    if not shapes:
        return shapes, None
    static, dims, inputs = {}, {}, []
    for name, shape in shapes.items():
        given = list(shape)
        for axis, dim in enumerate(given[1:], 1):
            bounds = bounds_of(dim)
            if bounds is None:
                continue
            low, high = bounds
            if high is None:
                raise DynamicExtentError(f"input {name!r}: axis {axis} is given as {dim}, without an upper bound; a "
                                         "dynamic dim past the batch needs one (the code is compiled at it)")
            if not 1 <= low <= high or high < 2:
                raise DynamicExtentError(f"input {name!r}: axis {axis} bounds {dim} need 1 <= low <= high, high >= 2")
            key = _declared_name(graph, name, axis) or f"axis {axis}"
            first = dims.setdefault(key, (len(dims), low, high, name))
            if first[1:3] != (low, high):
                raise DynamicExtentError(f"inputs {first[3]!r} and {name!r} share dynamic dim {key!r} but give it "
                                         f"bounds {first[1]}..{first[2]} and {low}..{high}")
            inputs.append((name, axis, first[0]))
            given[axis] = high
        static[name] = given
    if not dims:
        return shapes, None
    unnamed = sum(1 for key in dims if key.startswith("axis "))
    named = tuple(ExtentDim(EXTENT_DIM if unnamed == 1 else EXTENT_DIM + key[5:], low, high)
                  if key.startswith("axis ") else ExtentDim(key, low, high)
                  for key, (_, low, high, _) in dims.items())
    return static, ExtentBounds(named, tuple(inputs))


def _declared_name(graph: Graph | None, name: str, axis: int) -> str | None:
    if graph is None or name not in graph.inputs:
        return None
    shape = getattr(graph.type_of(Value(name)), "shape", None) or ()
    return shape[axis] if axis < len(shape) and isinstance(shape[axis], str) else None


def extent_axes(graph: Graph, bounds: ExtentBounds) -> dict[Value, frozenset]:
    """value -> what it holds (compiler/extent_types.py), in the optimized graph, whose every mask and
    rescale must be in place."""
    def check(node, effect) -> None:
        for mask in effect.masks:
            if not is_masked(graph, graph.input_values(node)[mask.input], mask, bounds.ranges):
                raise DynamicExtentError(f"node {node.name!r} ({node.qualified_op}) would read a dynamic dim's "
                                         f"padding (input {mask.input}, axis {mask.axis}): the mask-dynamic-tails "
                                         "pass masks it; do not disable that pass with a dynamic dim")
        users = [graph.node(user) for user, _ in graph.uses(Value(node.name))]
        if effect.rescale and not (len(users) == 1 and users[0].op_type == SCALE_OP):
            raise DynamicExtentError(f"node {node.name!r} ({node.qualified_op}) averages over a dynamic dim's bound: "
                                     "the mask-dynamic-tails pass rescales it; do not disable that pass")
    try:
        return propagate(graph, bounds.inputs, bounds.ranges, check)
    except ExtentProblem as problem:
        raise DynamicExtentError(str(problem)) from None


def output_axes(graph: Graph, axes: Mapping[Value, frozenset], bounds: ExtentBounds
                ) -> dict[str, list[tuple[int, Extent]]]:
    """Per graph output holding dynamic dims, each axis holding one whole and its extent; raises when an
    output holds one merged with another dim (the runtime cuts whole axes)."""
    result = {}
    for name, value in graph.outputs:
        held = axes.get(value)
        if not held:
            continue
        shape = graph.type_of(value).shape if isinstance(graph.type_of(value), TensorType) else None
        plain = [(h.axis, h.extent) for h in held
                 if h.inner == 1 and shape and shape[h.axis] == h.extent.size(bounds.dims[h.extent.dim].high)]
        if len(plain) != len(held) or len({axis for axis, _ in plain}) != len(plain):
            raise DynamicExtentError(f"output {name!r} (shape {shape}) holds a dynamic dim merged with another "
                                     "(axis, inner stride): an output must hold each whole on one axis. Reshape the "
                                     "output in the model, or compile one part per size with specialize=")
        result[name] = sorted(plain)
    return result


def first_axes(axes: Mapping[Value, frozenset], value: Value, shape, bound: int, whole: bool = True) -> list[int]:
    """The axes of `value` holding the first dim (extent_types.FIRST, of bound `bound`) with inner stride 1,
    outermost first; `whole`: the axis is just the dim, else it may repeat it, as [B*S, H] does."""
    return sorted(held.axis for held in axes.get(value, ()) if held.inner == 1 and held.extent == FIRST and
                  (shape[held.axis] == bound if whole else shape[held.axis] % bound == 0))


def extent_rows(graph: Graph, axes: Mapping[Value, frozenset], bounds: ExtentBounds) -> dict[str, tuple[int, int]]:
    """Per node whose output holds the first dim whole and unchanged by windows (a sequence): (its bound,
    the groups of it the axes before hold), for launches that shrink with its size (gpu: program.py)."""
    bound, rows = bounds.dims[0].high, {}
    for node in graph.nodes():
        if node.is_input or node.is_constant:
            continue
        shape = node.outputs[0].shape
        held = first_axes(axes, Value(node.name), shape, bound)
        if held:
            rows[node.name] = (bound, math.prod(shape[:held[0]]))
    return rows
