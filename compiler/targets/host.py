"""The host target: the string ops, run by the runtime itself (runtime/host.py, numpy only).

The cpu target hands the nodes it cannot compile but this target can run to host parts of a hetero
artifact (compiler/partition.py), so models with string inputs, outputs or ops compile for the cpu.
The artifact lists the nodes, their value names and JSON attributes, and the constants they read.
"""

from __future__ import annotations

import numpy as np

from compiler.artifact import Artifact, compiler_version
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassSpec
from compiler.targets.base import Target, Unsupported, register_target
from compiler.targets.ref import RefTarget, signature

STRING_OPS = frozenset({"StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch"})
STRING_AWARE_OPS = frozenset({"ai.onnx.ml::LabelEncoder", "Equal", "Identity", "Cast"})  # run here when strings flow


def _json(value):
    if isinstance(value, np.ndarray):
        dtype = "string" if value.dtype == object else str(value.dtype)
        return {"array": value.tolist(), "dtype": dtype}
    if isinstance(value, dict):
        return {key: _json(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"attribute value {value!r} has no JSON form")


@register_target
class HostTarget(Target):
    name = "host"
    description = "string ops run by the runtime in numpy (the cpu target's string parts)"

    def node_problem(self, graph: Graph, node: Node) -> str | None:
        strings = any(isinstance(t, TensorType) and t.dtype == "string"
                      for t in [*graph.input_types(node), *node.outputs])
        if node.qualified_op in STRING_OPS or (node.qualified_op in STRING_AWARE_OPS and strings):
            try:
                _json(node.attrs)
            except TypeError as error:
                return f"{node.qualified_op}: {error}"
            return None
        return f"{node.qualified_op} is not one of the host target's string ops"

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        return self.node_problems(graph)

    def pipeline(self, options: dict) -> list[PassSpec]:
        return RefTarget().pipeline(options)

    def emit(self, graph: Graph, options: dict) -> Artifact:
        constants, nodes = {}, []
        for node in graph.topological_order():
            if node.is_constant:
                constants[graph.value_name(Value(node.name, 0))] = _json(node.attrs["value"])
            elif not node.is_input:
                nodes.append({"op": node.qualified_op, "attrs": _json(dict(sorted(node.attrs.items()))),
                              "inputs": [graph.value_name(v) for v in graph.input_values(node)],
                              "outputs": list(node.output_names)})
        host = {"nodes": nodes, "constants": constants, "outputs": [graph.value_name(v) for _, v in graph.outputs]}
        return Artifact({"target": self.name, "compiler_version": compiler_version(), **signature(graph),
                         "host": host})
