"""Partitions: a graph cut into consecutive parts, each compiled for its own target, in one artifact.

`split(graph, device_of)` cuts the graph (topological order) into runs of nodes on one device, each
with the values it reads from and hands to other parts; `subgraph` makes a part a graph of its own;
`hetero_artifact` compiles every part as a whole artifact and stores it with the dispatch part
mechanism (`p<k>.<file>`, compiler/dispatch.py). The "hetero" manifest lists per part the tensors it
reads and writes, by value name; runtime/hetero.py runs the parts in order and passes them across.
Used by the hetero target (compiler/targets/hetero.py) and the gna target's cpu fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from compiler.artifact import Artifact, compiler_version
from compiler.ir.graph import Graph, Node, Value
from compiler.targets.ref import signature

HETERO_TARGET = "hetero"


@dataclass(frozen=True)
class Part:
    device: str
    nodes: tuple[Node, ...]
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]


def split(graph: Graph, device_of: Callable[[Node], str]) -> list[Part]:
    """Consecutive runs of nodes (topological order) on one device; each part's inputs and outputs."""
    runs: list[tuple[str, list[Node]]] = []
    for node in graph.topological_order():
        if node.is_input or node.is_constant:
            continue
        device = device_of(node)
        if not runs or runs[-1][0] != device:
            runs.append((device, []))
        runs[-1][1].append(node)
    parts = []
    for device, nodes in runs:
        names = {node.name for node in nodes}
        inputs = dict.fromkeys(v for node in nodes for v in graph.input_values(node)
                               if v is not None and v.node not in names and graph.constant_value(v) is None)
        outputs = [Value(node.name, index) for node in nodes for index in range(len(node.outputs))
                   if graph.is_graph_output(Value(node.name, index))
                   or any(user not in names for user, _ in graph.uses(Value(node.name, index)))]
        parts.append(Part(device, tuple(nodes), tuple(inputs), tuple(outputs)))
    return parts


def subgraph(graph: Graph, part: Part, name: str) -> Graph:
    """The part as a graph of its own: boundary values become inputs and outputs named as in `graph`."""
    sub = Graph(name)
    mapped = {value: sub.add_input(graph.value_name(value), graph.type_of(value)) for value in part.inputs}

    def value_in_sub(value: Value | None) -> Value | None:
        if value is None:
            return None
        if value not in mapped:
            mapped[value] = sub.add_constant(graph.constant_value(value), graph.value_name(value))
        return mapped[value]

    for node in part.nodes:
        added = sub.add_node(node.op_type, [value_in_sub(v) for v in graph.input_values(node)], node.attrs,
                             domain=node.domain, version=node.version, outputs=list(node.outputs), name=node.name,
                             output_names=list(node.output_names))
        mapped.update({Value(node.name, i): Value(added.name, i) for i in range(len(node.outputs))})
    for value in part.outputs:
        sub.add_output(graph.value_name(value), mapped[value])
    return sub


def hetero_artifact(graph: Graph, parts: list[Part], compile_part) -> Artifact:
    """One artifact of the parts, each compiled by `compile_part(part, its subgraph)`."""
    manifest = {"target": HETERO_TARGET, "compiler_version": compiler_version(), **signature(graph),
                "output_values": [graph.value_name(value) for _, value in graph.outputs], "parts": []}
    files = {}
    for index, part in enumerate(parts):
        artifact = compile_part(part, subgraph(graph, part, f"{graph.name}.part{index}"))
        prefix = f"p{index}."
        manifest["parts"].append({"prefix": prefix, "target": artifact.manifest["target"],
                                  "inputs": [graph.value_name(v) for v in part.inputs],
                                  "outputs": [graph.value_name(v) for v in part.outputs]})
        files[prefix + "manifest.json"] = artifact.manifest_bytes()
        files.update({prefix + name: data for name, data in artifact.files.items()})
    return Artifact(manifest, files)
