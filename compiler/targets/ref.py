"""The ref target: the semantic oracle. Its artifact carries the optimized IR and the
runtime executes it with each op's numpy reference semantics (compiler.ops)."""

from __future__ import annotations

import json

from compiler.artifact import Artifact, compiler_version
from compiler.ir.graph import Graph, Value
from compiler.ir.serialize import WeightsWriter, encode_graph, encode_type
from compiler.ops.registry import lookup
from compiler.passes.manager import PassSpec
from compiler.targets.base import Target, Unsupported, register_target


def _walk(graph: Graph):
    for node in graph.nodes():
        yield node
        for subgraph in graph.subgraphs(node).values():
            yield from _walk(subgraph)


def signature(graph: Graph) -> dict:
    """Inputs and outputs as the manifest lists them: name, dtype/shape (JSON types)."""
    inputs = [{"name": name, "type": encode_type(graph.type_of(Value(name, 0)))} for name in graph.inputs]
    outputs = [{"name": name, "type": encode_type(graph.type_of(value))} for name, value in graph.outputs]
    return {"inputs": inputs, "outputs": outputs}


@register_target
class RefTarget(Target):
    name = "ref"
    description = "reference interpreter over the IR (numpy); the oracle every other target is checked against"

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        return [Unsupported(node.name, node.qualified_op, "no definition in compiler/ops")
                for node in _walk(graph)
                if not (node.is_input or node.is_constant) and lookup(node.op_type, node.domain) is None]

    def pipeline(self, options: dict) -> list[PassSpec]:
        return [
            PassSpec("eliminate-identity", why="Identity and inference Dropout only rename values"),
            PassSpec("fold-constants", why="evaluate what does not depend on the inputs once, at compile time"),
            PassSpec("eliminate-common-subexpressions", why="compute each distinct value once"),
            PassSpec("eliminate-dead-code", why="drop nodes whose results nobody reads"),
            PassSpec("infer-types", why="refresh types after the rewrites (folded shapes become static)"),
        ]

    def emit(self, graph: Graph, options: dict) -> Artifact:
        weights = WeightsWriter()
        encoded = json.dumps(encode_graph(graph, weights), sort_keys=True, separators=(",", ":")).encode()
        manifest = {"target": self.name, "compiler_version": compiler_version(),
                    "options": {k: v for k, v in sorted(options.items())}, **signature(graph)}
        return Artifact(manifest, {"graph.json": encoded, "weights.bin": bytes(weights.blob)})
