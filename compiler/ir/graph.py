"""The one IR of Kiln: a dataflow graph over a networkx MultiDiGraph.

Every value is produced by exactly one node: graph inputs are `Input` nodes and constants
are `Constant` nodes (both in the "kiln" domain), so edges are uniform. An edge u -> v
carries `out` (which output of u) and `in` (which input of v). A node may have absent
optional inputs (no edge at that index). Subgraphs (If/Loop/Scan bodies) are Graph
objects held in node attributes; values they capture from the enclosing graph are made
explicit extra inputs of both the node and the subgraph by the frontend.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import networkx as nx
import numpy as np

from compiler.ir.types import TensorType, ValueType, dtype_of_array

KILN_DOMAIN = "kiln"


class Value(NamedTuple):
    """Output `index` of the node named `node`."""

    node: str
    index: int = 0


@dataclass
class Node:
    """One operation. `outputs` holds output types (None until inferred); `output_names` the value names."""

    name: str
    op_type: str
    domain: str = ""
    version: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    num_inputs: int = 0
    outputs: list[ValueType | None] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)

    @property
    def is_input(self) -> bool:
        return self.domain == KILN_DOMAIN and self.op_type == "Input"

    @property
    def is_constant(self) -> bool:
        return self.domain == KILN_DOMAIN and self.op_type == "Constant"

    @property
    def qualified_op(self) -> str:
        return f"{self.domain}::{self.op_type}" if self.domain else self.op_type


class Graph:
    """A dataflow graph with the verbs passes need."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.nx = nx.MultiDiGraph()
        self.inputs: list[str] = []  # names of Input nodes, in signature order
        self.outputs: list[tuple[str, Value]] = []  # (graph output name, value)
        self._order = itertools.count()
        self._value_names: set[str] = set()

    # ----- building -------------------------------------------------------------------
    def _unique(self, base: str, taken) -> str:
        if base not in taken:
            return base
        for i in itertools.count(1):
            candidate = f"{base}_{i}"
            if candidate not in taken:
                return candidate

    def add_node(
        self,
        op_type: str,
        inputs: Iterable[Value | None] = (),
        attrs: dict[str, Any] | None = None,
        *,
        domain: str = "",
        version: int | None = None,
        num_outputs: int = 1,
        outputs: list[ValueType | None] | None = None,
        name: str | None = None,
        output_names: list[str] | None = None,
    ) -> Node:
        """Add a node wired to `inputs` (None marks an absent optional input) and return it."""
        inputs = list(inputs)
        name = self._unique(name or op_type.lower(), self.nx)
        if outputs is None:
            outputs = [None] * num_outputs
        if output_names is None:
            output_names = [name if len(outputs) == 1 else f"{name}:{i}" for i in range(len(outputs))]
        output_names = [self._unique(n or f"{name}:{i}", self._value_names) for i, n in enumerate(output_names)]
        self._value_names.update(output_names)
        node = Node(name, op_type, domain, version, dict(attrs or {}), len(inputs), list(outputs), output_names)
        self.nx.add_node(name, node=node, order=next(self._order))
        for index, value in enumerate(inputs):
            if value is not None:
                self.connect(value, name, index)
        return node

    def connect(self, value: Value, consumer: str, index: int) -> None:
        if value.node not in self.nx:
            raise KeyError(f"value {value} comes from a node that is not in graph {self.name!r}")
        self.nx.add_edge(value.node, consumer, out=value.index, **{"in": index})

    def add_input(self, name: str, type: ValueType | None) -> Value:
        node = self.add_node("Input", domain=KILN_DOMAIN, outputs=[type], name=name, output_names=[name])
        self.inputs.append(node.name)
        return Value(node.name, 0)

    def add_constant(self, array: np.ndarray, name: str | None = None) -> Value:
        array = np.asarray(array)
        type = TensorType(dtype_of_array(array), array.shape)
        node = self.add_node("Constant", attrs={"value": array}, domain=KILN_DOMAIN, outputs=[type],
                             name=name or "const", output_names=[name] if name else None)
        return Value(node.name, 0)

    def add_output(self, name: str, value: Value) -> None:
        self.outputs.append((name, value))

    # ----- reading --------------------------------------------------------------------
    def node(self, name: str) -> Node:
        try:
            return self.nx.nodes[name]["node"]
        except KeyError:
            raise KeyError(f"no node named {name!r} in graph {self.name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def nodes(self) -> list[Node]:
        """All nodes in insertion order."""
        return [data["node"] for _, data in sorted(self.nx.nodes(data=True), key=lambda item: item[1]["order"])]

    def type_of(self, value: Value) -> ValueType | None:
        return self.node(value.node).outputs[value.index]

    def value_name(self, value: Value) -> str:
        return self.node(value.node).output_names[value.index]

    def input_values(self, node: Node | str) -> list[Value | None]:
        """The values feeding `node`, by input index; None where an optional input is absent."""
        name = node if isinstance(node, str) else node.name
        values: list[Value | None] = [None] * self.node(name).num_inputs
        for producer, _, data in self.nx.in_edges(name, data=True):
            values[data["in"]] = Value(producer, data["out"])
        return values

    def input_types(self, node: Node) -> list[ValueType | None]:
        return [None if v is None else self.type_of(v) for v in self.input_values(node)]

    def constant_value(self, value: Value | None) -> np.ndarray | None:
        """The array behind `value` when a Constant node produces it, else None."""
        if value is None:
            return None
        node = self.node(value.node)
        return node.attrs["value"] if node.is_constant else None

    def uses(self, value: Value) -> list[tuple[str, int]]:
        """(consumer node name, input index) of every use of `value` inside this graph."""
        return sorted((consumer, data["in"]) for _, consumer, data in self.nx.out_edges(value.node, data=True)
                      if data["out"] == value.index)

    def users(self, node: Node | str) -> list[str]:
        name = node if isinstance(node, str) else node.name
        return sorted(set(self.nx.successors(name)))

    def is_graph_output(self, value: Value) -> bool:
        return any(v == value for _, v in self.outputs)

    def topological_order(self) -> list[Node]:
        """Nodes in a deterministic topological order (ties broken by insertion order)."""
        order = {name: data["order"] for name, data in self.nx.nodes(data=True)}
        names = nx.lexicographical_topological_sort(self.nx, key=order.__getitem__)
        return [self.node(name) for name in names]

    def subgraphs(self, node: Node) -> dict[str, "Graph"]:
        return {key: value for key, value in node.attrs.items() if isinstance(value, Graph)}

    # ----- rewriting ------------------------------------------------------------------
    def set_input(self, node: Node | str, index: int, value: Value | None) -> None:
        """Point input `index` of `node` at `value` (None makes it absent)."""
        name = node if isinstance(node, str) else node.name
        for producer, _, key, data in list(self.nx.in_edges(name, keys=True, data=True)):
            if data["in"] == index:
                self.nx.remove_edge(producer, name, key)
        if value is not None:
            self.connect(value, name, index)

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Rewire every consumer (and graph output) of `old` to read `new` instead."""
        for consumer, index in self.uses(old):
            self.set_input(consumer, index, new)
        self.outputs = [(name, new if value == old else value) for name, value in self.outputs]

    def remove_node(self, name: str) -> None:
        """Remove a node whose outputs nobody uses."""
        node = self.node(name)
        for index in range(len(node.outputs)):
            value = Value(name, index)
            if self.uses(value) or self.is_graph_output(value):
                raise ValueError(f"cannot remove node {name!r} ({node.op_type}): output {index} is still used")
        self.nx.remove_node(name)
        self._value_names.difference_update(node.output_names)
        if name in self.inputs:
            self.inputs.remove(name)

    def replace_node(self, old: Node | str, op_type: str, inputs, attrs=None, **kwargs) -> Node:
        """Put a new node in place of `old`: same output count, uses rewired, old node removed."""
        old = self.node(old) if isinstance(old, str) else old
        kwargs.setdefault("outputs", list(old.outputs))
        self._value_names.difference_update(old.output_names)
        new = self.add_node(op_type, inputs, attrs, name=old.name, output_names=list(old.output_names), **kwargs)
        for index in range(len(old.outputs)):
            self.replace_all_uses(Value(old.name, index), Value(new.name, index))
        self.remove_node(old.name)
        self._value_names.update(new.output_names)
        return new

    def copy(self) -> "Graph":
        """A deep-enough copy: new graph structure and nodes; constant arrays are shared, subgraphs copied."""
        other = Graph(self.name)
        other.nx = nx.MultiDiGraph()
        for name, data in self.nx.nodes(data=True):
            node = data["node"]
            attrs = {k: (v.copy() if isinstance(v, Graph) else v) for k, v in node.attrs.items()}
            clone = Node(node.name, node.op_type, node.domain, node.version, attrs, node.num_inputs,
                         list(node.outputs), list(node.output_names))
            other.nx.add_node(name, node=clone, order=data["order"])
        other.nx.add_edges_from(self.nx.edges(keys=True, data=True))
        other.inputs = list(self.inputs)
        other.outputs = list(self.outputs)
        other._order = itertools.count(max((d["order"] for _, d in self.nx.nodes(data=True)), default=-1) + 1)
        other._value_names = set(self._value_names)
        return other

    def __str__(self) -> str:
        from compiler.ir.printer import format_graph

        return format_graph(self)
