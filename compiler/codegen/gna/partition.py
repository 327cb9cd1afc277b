"""`--fallback cpu` for the gna target: what the GNA cannot run goes to the cpu target, in one artifact.

The graph (after the gna pipeline) is cut in topological order into parts, each run wholly on one
device: a node is on the cpu when the gna target rejects it, alone or in its part (a trial
lowering of each gna part finds layout and ISA-limit problems; those nodes move and the cut is
redone). Each part is compiled by its own target as a whole artifact and stored with the dispatch
part mechanism (`p<k>.<file>`, compiler/dispatch.py). The "hetero" manifest lists per part the
tensors it reads and writes, by value name; runtime/hetero.py runs the parts in order and passes
the tensors across. A gna part quantizes its float inputs to int16 and dequantizes its outputs
(its endpoints' scale factors), so the boundary conversion is the gna executor's own.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def split(graph: Graph, on_cpu: set[str]) -> list[Part]:
    """Consecutive runs of nodes (topological order) on one device; each part's inputs and outputs."""
    runs: list[tuple[str, list[Node]]] = []
    for node in graph.topological_order():
        if node.is_input or node.is_constant:
            continue
        device = "cpu" if node.name in on_cpu else "gna"
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


def _to_move(graph: Graph, part: Part, problem) -> set[str]:
    """The part's nodes a problem puts on the cpu: the node it names, or those reading the input it names."""
    names = {node.name for node in part.nodes}
    if problem.node in names:
        return {problem.node}
    return {node.name for node in part.nodes
            if any(v is not None and graph.value_name(v) == problem.node for v in graph.input_values(node))}


def assign(graph: Graph, gna_problems) -> list[Part]:
    """The parts, once no gna part has a problem `gna_problems(graph)` (a list of Unsupported) can place."""
    on_cpu: set[str] = set()
    while True:
        parts = split(graph, on_cpu)
        moved = set()
        for index, part in enumerate(parts):
            if part.device == "gna":
                for problem in gna_problems(subgraph(graph, part, f"part{index}")):
                    moved |= _to_move(graph, part, problem)
        if not moved:
            return parts
        on_cpu |= moved


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
