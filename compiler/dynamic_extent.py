"""Dynamic extent: one cpu or gpu artifact for a bounded dim other than the batch, say a sequence length
(`shapes={"ids": ["1..8", "1..512"]}`).

The graph is compiled at the bound with the dynamic dim padded to it: position p along the dim holds
what it would hold at any extent s > p, and positions >= s are padding that no valid output reads.
That holds by itself for ops that work position by position along the dim: elementwise ops, linear
layers over other axes, softmax and normalization over other axes, views and transposes that move the
dim whole (compiler/extent_rules.py tracks where the dim is in every value). Ops that mix positions
along it (a softmax, a reduction or a contraction over it) read it through a kiln::MaskTail, which the
mask-dynamic-tails pass puts in front: it fills positions >= s with what makes them vanish (-inf before
a softmax or a max, 0 before a sum or a contraction). Other mixing (Concat or Slice along the dim, a
convolution over it, a mean over it) is refused naming the node; `specialize=` compiles static parts.

At run time the cpu entry `kiln_run_extent` takes s (and the batch): MaskTail reads it, and kernels
whose work items walk the dim in rows launch only the items of positions < s (codegen/llvm/
extent_launch.py), or stop their loops there (mark_extent_linear). On the gpu, MaskTail reads s from
the runtime's `extent` buffer and the other kernels run at the bound. The runtime stages inputs in
zero-filled buffers of the bound and cuts the outputs to s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from compiler.codegen.llvm.extent_launch import LINEAR
from compiler.codegen.llvm.kernels.linear_algebra import linear_problem
from compiler.codegen.llvm.kernels.registry import (BATCH_ROWS, EXTENT_COLUMNS, EXTENT_COPY, EXTENT_DEPTH,
                                                     EXTENT_REDUCED, EXTENT_ROWS)
from compiler.dynamic_batch import bounds_of
from compiler.extent_rules import MASK_OP, ExtentProblem, is_masked, propagate
from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType

EXTENT_DIM = "extent"  # the dim's name in the signature when the model does not name it
EXTENT_SINKS = {"Reshape": 1, "Expand": 1, "ConstantOfShape": 0, "Tile": 1, "Range": 1}
"""Shape operands the dim's size may reach (compiler/dynamic_batch.check_size_arithmetic): each makes
positions < s what they are at any size (Range only as its limit: 0, 1, ... up to it)."""


class DynamicExtentError(ValueError):
    """The model or the shapes asked for cannot run with a dynamic extent."""


@dataclass(frozen=True)
class ExtentBounds:
    """The extent's bounds (`high` is also the size compiled for) and, per dynamic input, its axis."""

    low: int
    high: int
    inputs: tuple[tuple[str, int], ...]
    name: str = EXTENT_DIM

    def named(self, graph: Graph) -> "ExtentBounds":
        """These bounds with the model's name for the dim: the symbolic one the first dynamic input declares."""
        name, axis = self.inputs[0]
        declared = graph.type_of(Value(name)) if name in graph.inputs else None
        shape = getattr(declared, "shape", None) or ()
        dim = shape[axis] if axis < len(shape) else None
        return ExtentBounds(self.low, self.high, self.inputs, dim if isinstance(dim, str) else EXTENT_DIM)

    @classmethod
    def from_options(cls, options: dict) -> "ExtentBounds | None":
        given = options.get("dynamic_extent")
        if not given:
            return None
        return cls(int(given["min"]), int(given["max"]), tuple((name, int(axis)) for name, axis in given["inputs"]),
                   given["name"])

    def option(self) -> dict:
        """The compile option (JSON) the passes and the cpu target read back with from_options."""
        return {"name": self.name, "min": self.low, "max": self.high, "inputs": [list(pair) for pair in self.inputs]}

    def describe(self, manifest: dict, output_axes: dict[str, int]) -> None:
        """Manifest: `dynamic_extent` (bounds, the axis of each input and output holding the dim), and that
        axis of each in the signature as the dim's name with its bounds (runtime/signature.py)."""
        name = self.name
        manifest["dynamic_extent"] = {"name": name, "min": self.low, "max": self.high,
                                      "inputs": dict(self.inputs), "outputs": output_axes}
        marked = [(entry, dict(self.inputs)[entry["name"]]) for entry in manifest["inputs"]
                  if entry["name"] in dict(self.inputs)]
        marked += [(entry, output_axes[entry["name"]]) for entry in manifest["outputs"] if entry["name"] in output_axes]
        for entry, axis in marked:
            shape = entry["type"]["shape"]
            shape[axis] = name
            bounds = entry.get("bounds") or [None] * len(shape)
            bounds[axis] = [self.low, self.high]
            entry["bounds"] = bounds



def split_extent(shapes: Mapping[str, Sequence] | None) -> tuple[dict | None, ExtentBounds | None]:
    """(the shapes with the dynamic dims after axis 0 at their upper bound, the extent's bounds or None).
    Every input's dynamic dim past axis 0 is the same extent: at most one per input, the same bounds."""
    if not shapes:
        return shapes, None
    static, found, inputs = {}, set(), []
    for name, shape in shapes.items():
        dims = list(shape)
        for axis, dim in enumerate(dims[1:], 1):
            bounds = bounds_of(dim)
            if bounds is None:
                continue
            low, high = bounds
            if high is None:
                raise DynamicExtentError(f"input {name!r}: axis {axis} is given as {dim}, without an upper bound; a "
                                         "dynamic dim past the batch needs one (the code is compiled at it)")
            if not 1 <= low <= high or high < 2:
                raise DynamicExtentError(f"input {name!r}: axis {axis} bounds {dim} need 1 <= low <= high, high >= 2")
            if any(given == name for given, _ in inputs):
                raise DynamicExtentError(f"input {name!r} gives two dynamic dims past the batch; Kiln compiles one "
                                         "(a sequence length, say): give the others with specialize=")
            found.add(bounds)
            inputs.append((name, axis))
            dims[axis] = high
        static[name] = dims
    if len(found) > 1:
        raise DynamicExtentError(f"inputs {[name for name, _ in inputs]} give different bounds "
                                 f"{sorted(f'{lo}..{hi}' for lo, hi in found)} to their dynamic dims past the batch; "
                                 "Kiln compiles one such dim, shared by those inputs")
    if not found:
        return shapes, None
    (low, high), = found
    return static, ExtentBounds(low, high, tuple(inputs))


def output_axes(graph: Graph, axes: Mapping[Value, frozenset], bounds: ExtentBounds) -> dict[str, int]:
    """Per graph output carrying the extent, the axis holding it; raises when an output holds it merged
    with another dim or on two axes (the runtime cuts one axis to the extent)."""
    result = {}
    for name, value in graph.outputs:
        carried = axes.get(value)
        if not carried:
            continue
        shape = graph.type_of(value).shape if isinstance(graph.type_of(value), TensorType) else None
        plain = [axis for axis, inner in carried if inner == 1 and shape and shape[axis] == bounds.high]
        if len(carried) != 1 or not plain:
            raise DynamicExtentError(f"output {name!r} (shape {shape}) holds the dynamic dim as {sorted(carried)} "
                                     "(axis, inner stride): an output must hold it whole on one axis. Reshape the "
                                     "output in the model, or compile one part per size with specialize=")
        result[name] = plain[0]
    return result


def extent_axes(graph: Graph, bounds: ExtentBounds) -> dict[Value, frozenset]:
    """value -> its axes holding the extent, in the optimized graph, whose every mask must be in place."""
    def check(node, masks) -> None:
        for mask in masks:
            if not is_masked(graph, graph.input_values(node)[mask.input], mask):
                raise DynamicExtentError(f"node {node.name!r} ({node.qualified_op}) would read the dynamic dim's "
                                         f"padding (input {mask.input}, axis {mask.axis}): the mask-dynamic-tails pass "
                                         "masks it; do not disable that pass with a dynamic dim")
    try:
        return propagate(graph, dict(bounds.inputs), bounds.high, bounds.low, check)
    except ExtentProblem as problem:
        raise DynamicExtentError(str(problem)) from None


def mark_extent_linear(graph: Graph, axes: Mapping[Value, frozenset], bounds: ExtentBounds) -> None:
    """Tell MatMul/Gemm nodes where they run over the extent (registry attributes): in their rows, the rows
    of one run of positions (BATCH_ROWS), so row blocks stop at each run's end (codegen/llvm/extent_launch.py),
    and those of the positions below the extent (EXTENT_ROWS), which a row block computes alone;
    in their columns or their sum (a MatMul's A holding it last), that the GEMM stops them at the extent.
    Softmax nodes over it stop there too (EXTENT_REDUCED), and Transpose and Gather copies along it
    (EXTENT_COPY)."""
    for node in graph.nodes():
        if node.op_type in ("Transpose", "Gather"):
            shape = node.outputs[0].shape
            held = sorted(axis for axis, inner in axes.get(Value(node.name), ()) if inner == 1 and
                          shape[axis] == bounds.high)
            if held:
                node.attrs[EXTENT_COPY] = [math.prod(shape[held[0] + 1:]), bounds.high]
        if node.op_type in ("Softmax", "LogSoftmax") and (node.version or 13) >= 13:
            x_value = graph.input_values(node)[0]
            axis = int(node.attrs.get("axis", -1)) % len(node.outputs[0].shape)
            if node.outputs[0].shape[axis] == bounds.high and (axis, 1) in axes.get(x_value, ()):
                node.attrs[EXTENT_REDUCED] = 1
        if node.op_type not in LINEAR:
            continue
        shape = node.outputs[0].shape
        held = {axis for axis, inner in axes.get(Value(node.name), ()) if inner == 1}
        rows = sorted(axis for axis in held if axis <= len(shape) - 2)
        if rows:
            per_position = math.prod(shape[rows[0] + 1:-1])
            period = bounds.high * per_position
            node.attrs[BATCH_ROWS] = math.gcd(node.attrs.get(BATCH_ROWS, period), period)
            node.attrs[EXTENT_ROWS] = [period, per_position]
        if len(shape) - 1 in held and shape[-1] == bounds.high:
            node.attrs[EXTENT_COLUMNS] = 1
        a_value = graph.input_values(node)[0]
        a_shape = graph.type_of(a_value).shape
        if node.op_type in ("MatMul", "FusedMatMul") and len(a_shape) >= 2 and a_shape[-1] == bounds.high and \
                (len(a_shape) - 1, 1) in axes.get(a_value, ()):
            node.attrs[EXTENT_DEPTH] = 1


def drop_honored_masks(graph: Graph) -> None:
    """Remove the MaskTails whose every reader stops at the extent itself (after mark_extent_linear): a
    Softmax over the masked axis, a blocked GEMM whose masked columns or sum it cuts short. Their fill would
    be written for nobody."""
    for node in list(graph.nodes()):
        if node.op_type != MASK_OP or node.attrs["inner"] != 1:
            continue
        if all(_stops_at_extent(graph, graph.node(reader), position, node) for reader, position in
               graph.uses(Value(node.name))) and not graph.is_graph_output(Value(node.name)):
            graph.replace_all_uses(Value(node.name), graph.input_values(node)[0])
            graph.remove_node(node.name)


def _stops_at_extent(graph: Graph, reader, position: int, mask) -> bool:
    axis, fill = mask.attrs["axis"], mask.attrs["fill"]
    rank = len(mask.outputs[0].shape)
    if reader.op_type in ("Softmax", "LogSoftmax"):
        return bool(reader.attrs.get(EXTENT_REDUCED)) and fill == -math.inf and \
            int(reader.attrs.get("axis", -1)) % rank == axis
    if reader.op_type not in ("MatMul", "FusedMatMul") or position > 1 or fill != 0.0 or rank < 2:
        return False
    if linear_problem(graph, reader, "MatMul").dot_form:
        return False
    depth_axis = rank - 1 if position == 0 else rank - 2
    return (axis == depth_axis and bool(reader.attrs.get(EXTENT_DEPTH))) or \
        (position == 1 and axis == rank - 1 and bool(reader.attrs.get(EXTENT_COLUMNS)))
