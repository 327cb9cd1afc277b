"""Static memory plan: where every tensor of a static-shape graph lives at run time.

Graph inputs and outputs live in the caller's buffers, constants in the weights blob, and
every intermediate in one workspace at an offset chosen by liveness: a block is reused
once the last reader of its tensor has run (first fit, 64-byte aligned). View ops
(Reshape and friends) alias their input's storage instead of copying, and a kernel that
reads each input element only to write the same output element (elementwise ops) writes
its result in place over an input that nobody reads afterwards. With `concat_in_place`, the
parts of a Concat whose parts are contiguous runs of its output (all dims before the axis are 1)
are written by their producers straight into their places, and the Concat has no kernel; such a
Concat may itself be a part of the next (DenseNet's chains share one block).

With `precompute=True`, nodes computed from constants alone that constant folding left to run
time (their results are too large to store in the artifact, e.g. ConstantOfShape weights) are
planned as precomputed: computed once when the model loads, into the weights buffer after the
weights blob (`precomputed_offset`, `precomputed_bytes`), and never again per inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.serialize import ALIGNMENT, WeightsWriter
from compiler.ir.types import TensorType, numpy_dtype
from compiler.passes.common import is_random

VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def _align(size: int) -> int:
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def tensor_bytes(value_type: TensorType) -> int:
    return math.prod(value_type.shape) * numpy_dtype(value_type.dtype).itemsize


@dataclass(frozen=True)
class Location:
    """`region` is input, output, weights or workspace; `offset` is a byte offset or the I/O index."""

    region: str
    offset: int


@dataclass
class Step:
    """One kernel launch (`node`), or a copy of `source` into graph output `output_index`."""

    node: Node | None
    copy_source: Value | None = None
    output_index: int = -1
    precompute: bool = False  # run once at load (kiln_precompute), not per inference


@dataclass
class MemoryPlan:
    locations: dict[Value, Location] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    workspace_bytes: int = 0
    weights: bytes = b""
    in_place: dict[str, int] = field(default_factory=dict)  # node name -> input its output overwrites
    precomputed_offset: int = 0  # where precomputed values start in the weights buffer
    precomputed_bytes: int = 0

    @property
    def run_steps(self) -> list[Step]:
        return [step for step in self.steps if not step.precompute]

    @property
    def precompute_steps(self) -> list[Step]:
        return [step for step in self.steps if step.precompute]


def is_view(node: Node) -> bool:
    return node.domain == "" and node.op_type in VIEW_OPS


class _FirstFit:
    """Blocks of the workspace in use, as sorted (offset, size); first fit from offset 0."""

    def __init__(self):
        self.used: list[tuple[int, int]] = []
        self.peak = 0

    def allocate(self, size: int) -> int:
        size = _align(max(size, 1))
        offset = 0
        for start, length in self.used:
            if start - offset >= size:
                break
            offset = max(offset, start + length)
        self.used.append((offset, size))
        self.used.sort()
        self.peak = max(self.peak, offset + size)
        return offset

    def free(self, offset: int) -> None:
        self.used = [block for block in self.used if block[0] != offset]


InPlace = Callable[[Graph, Node], "int | None"]
"""For a node: the input whose storage its output may take (same size, each element read only
to write the same output element), or None."""


def precomputable(graph: Graph) -> set[str]:
    """Nodes whose inputs all come from constants or from other such nodes (and that draw no random
    numbers): their results are the same for every inference."""
    found: set[str] = set()
    for node in graph.topological_order():
        if node.is_input or node.is_constant or graph.subgraphs(node) or is_random(graph, node):
            continue
        producers = [graph.node(value.node) for value in graph.input_values(node) if value is not None]
        if producers and all(p.is_constant or p.name in found for p in producers):
            found.add(node.name)
    return found


def _is_concat(node: Node) -> bool:
    return node.domain == "" and node.op_type == "Concat"


def _concat_parts(graph: Graph, output_slot: dict, precomputed: set[str]) -> dict[Value, tuple[Value, int]]:
    """part -> (Concat output, byte offset of the part in it) for every Concat whose parts can all be
    written in place: its output in the workspace, all dims before its axis 1, and each part a distinct
    value that no other Concat takes, computed by a kernel of one output (no view, input, constant or
    precomputed value) or itself such a Concat (DenseNet's chains: each layer's Concat a prefix of the
    next), at a 64-byte aligned offset. Other nodes may read a part too: it stays in place, and its
    block lives as long as the Concat's."""
    parts: dict[Value, tuple[Value, int]] = {}
    for node in graph.topological_order():
        if not _is_concat(node) or Value(node.name, 0) in output_slot:
            continue
        shape = node.outputs[0].shape
        axis = node.attrs["axis"] % len(shape)
        values = graph.input_values(node)
        producers = [graph.node(value.node) for value in values]
        if math.prod(shape[:axis]) != 1 or len(set(values)) != len(values) or any(
                p.is_input or p.is_constant or is_view(p) or p.name in precomputed or len(p.outputs) != 1
                or (_is_concat(p) and not any(concat == v for concat, _ in parts.values()))
                or graph.is_graph_output(v) or sum(_is_concat(graph.node(user)) for user, _ in graph.uses(v)) != 1
                for p, v in zip(producers, values)):
            continue
        offsets = np.cumsum([0] + [tensor_bytes(graph.type_of(value)) for value in values[:-1]])
        if all(offset % ALIGNMENT == 0 for offset in offsets):
            parts.update({value: (Value(node.name, 0), int(offset)) for value, offset in zip(values, offsets)})
    return parts


def _placed(parts: dict[Value, tuple[Value, int]], value: Value) -> tuple[Value, int]:
    """(the outermost Concat holding `value`, its byte offset there), through Concats that are parts."""
    concat, offset = parts[value]
    while concat in parts:
        concat, inner = parts[concat]
        offset += inner
    return concat, offset


def plan_memory(graph: Graph, in_place: InPlace | None = None, precompute: bool = False,
                concat_in_place: bool = False) -> MemoryPlan:
    plan = MemoryPlan()
    precomputed = precomputable(graph) if precompute else set()
    order = [n for n in graph.topological_order()]
    weights = WeightsWriter()
    for index, name in enumerate(graph.inputs):
        plan.locations[Value(name, 0)] = Location("input", index)
    for node in order:
        if node.is_constant:
            plan.locations[Value(node.name, 0)] = Location("weights", weights.add(np.asarray(node.attrs["value"]))["offset"])
    plan.weights = bytes(weights.blob)
    plan.precomputed_offset = _align(len(plan.weights))

    output_slot: dict[Value, int] = {}  # outputs a kernel writes directly; the others are copied there
    for index, (_, value) in enumerate(graph.outputs):
        producer = graph.node(value.node)
        if value not in output_slot and not (producer.is_input or producer.is_constant or producer.name in precomputed):
            output_slot[value] = index

    parts = _concat_parts(graph, output_slot, precomputed) if concat_in_place else {}
    assembled = {concat for concat, _ in parts.values()}  # Concats with no kernel: their parts write in place
    # value -> the value whose storage it shares
    root: dict[Value, Value] = {part: _placed(parts, part)[0] for part in parts}
    last_use: dict[Value, int] = {}
    for step, node in enumerate(order):
        for value in graph.input_values(node):
            if value is not None:
                last_use[root.get(value, value)] = step
        if is_view(node) and Value(node.name, 0) not in output_slot:
            source = graph.input_values(node)[0]
            root[Value(node.name, 0)] = root.get(source, source)

    allocator = _FirstFit()
    for step, node in enumerate(order):
        if node.is_input or node.is_constant:
            continue
        if is_view(node) and Value(node.name, 0) in root:
            plan.locations[Value(node.name, 0)] = plan.locations[root[Value(node.name, 0)]]
        elif Value(node.name, 0) in assembled and Value(node.name, 0) not in parts:
            pass  # the first of its parts to be computed placed its block
        elif Value(node.name, 0) in parts:
            concat, offset = _placed(parts, Value(node.name, 0))
            if concat not in plan.locations:
                block = allocator.allocate(tensor_bytes(graph.type_of(concat)))
                plan.locations[concat] = Location("workspace", block)
            plan.locations[Value(node.name, 0)] = Location("workspace", plan.locations[concat].offset + offset)
            if Value(node.name, 0) not in assembled:  # an assembled Concat that is a part runs no kernel either
                plan.steps.append(Step(node))
        elif node.name in precomputed:
            for index, value_type in enumerate(node.outputs):
                plan.locations[Value(node.name, index)] = Location(
                    "weights", plan.precomputed_offset + plan.precomputed_bytes)
                plan.precomputed_bytes += _align(tensor_bytes(value_type))
            plan.steps.append(Step(node, precompute=True))
        else:
            taken = _taken_input(graph, node, step, in_place, plan, root, last_use, output_slot)
            for index, value_type in enumerate(node.outputs):
                value = Value(node.name, index)
                if value in output_slot:
                    plan.locations[value] = Location("output", output_slot[value])
                elif taken is not None:
                    plan.locations[value] = taken
                else:
                    plan.locations[value] = Location("workspace", allocator.allocate(tensor_bytes(value_type)))
            plan.steps.append(Step(node))
        for value in {root.get(v, v) for v in graph.input_values(node) if v is not None}:
            location = plan.locations.get(value)
            if last_use.get(value) == step and location is not None and location.region == "workspace" and \
                    location != plan.locations.get(Value(node.name, 0)):
                allocator.free(location.offset)
        for index in range(len(node.outputs)):
            value = Value(node.name, index)
            location = plan.locations[value]
            unread = value not in last_use and value not in root  # a view's storage belongs to its root
            if location.region == "workspace" and unread:
                allocator.free(location.offset)
    for index, (_, value) in enumerate(graph.outputs):
        if output_slot.get(value) != index:
            plan.steps.append(Step(None, copy_source=value, output_index=index))
    plan.workspace_bytes = allocator.peak
    return plan


def _taken_input(graph: Graph, node: Node, step: int, in_place: InPlace | None, plan: MemoryPlan,
                 root: dict, last_use: dict, output_slot: dict) -> Location | None:
    """The workspace block of the input `node` writes its single output over, if any (recorded
    in plan.in_place); the input must be read by nobody after this node."""
    if in_place is None or len(node.outputs) != 1 or Value(node.name, 0) in output_slot:
        return None
    index = in_place(graph, node)
    if index is None:
        return None
    source = root.get(graph.input_values(node)[index], graph.input_values(node)[index])
    location = plan.locations.get(source)
    others = [v for i, v in enumerate(graph.input_values(node)) if i != index and v is not None]
    if location is None or location.region != "workspace" or last_use.get(source) != step or \
            any(root.get(v, v) == source for v in others):
        return None
    plan.in_place[node.name] = index
    return location
