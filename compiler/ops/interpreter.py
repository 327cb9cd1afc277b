"""Executes a Graph with each node's reference kernel: the semantic oracle of Kiln.

Kernels are prepared once per node when the Interpreter is built; `run` then only calls
them in topological order, dropping each intermediate value after its last use.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ops.registry import lookup


class UnsupportedOpError(NotImplementedError):
    """The graph holds ops that have no definition in compiler/ops."""


class KernelError(RuntimeError):
    """A node's reference kernel failed on the values it was given."""


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    if isinstance(value, list):
        return f"seq[{len(value)}]"
    return "none" if value is None else type(value).__name__


class Interpreter:
    def __init__(self, graph: Graph):
        self.graph = graph
        order = graph.topological_order()
        missing = sorted({n.qualified_op for n in order
                          if not (n.is_input or n.is_constant) and lookup(n.op_type, n.domain) is None})
        if missing:
            raise UnsupportedOpError(f"graph {graph.name!r} uses ops with no definition: {', '.join(missing)}")
        last_use: dict[Value, str] = {}
        for node in order:
            for value in graph.input_values(node):
                if value is not None:
                    last_use[value] = node.name
        kept = {value for _, value in graph.outputs}
        self.constants = {Value(n.name, 0): n.attrs["value"] for n in order if n.is_constant}
        self.steps = []
        for node in order:
            if node.is_input or node.is_constant:
                continue
            inputs = graph.input_values(node)
            kernel = lookup(node.op_type, node.domain).kernel(node, graph.input_types(node),
                                                              [v is not None for v in inputs])
            dead = [v for v in set(inputs) if v is not None and last_use.get(v) == node.name
                    and v not in kept and v not in self.constants]
            self.steps.append((node, kernel, inputs, dead))

    def run(self, feeds: Mapping[str, object] | list) -> list:
        """Values of the graph outputs, given values for the graph inputs (by name or in order)."""
        if not isinstance(feeds, Mapping):
            feeds = dict(zip(self.graph.inputs, feeds))
        env: dict[Value, object] = dict(self.constants)
        for name in self.graph.inputs:
            if name not in feeds:
                raise KeyError(f"graph {self.graph.name!r}: no value given for input {name!r}")
            env[Value(name, 0)] = feeds[name]
        for node, kernel, inputs, dead in self.steps:
            args = [None if v is None else env[v] for v in inputs]
            try:
                results = kernel(args)
            except Exception as error:
                shapes = ", ".join(_describe(a) for a in args)
                raise KernelError(f"node {node.name!r} ({node.qualified_op}) failed on inputs ({shapes}): "
                                  f"{type(error).__name__}: {error}") from error
            for index, result in enumerate(results[: len(node.outputs)]):
                env[Value(node.name, index)] = result
            for value in dead:
                del env[value]
        return [env[value] for _, value in self.graph.outputs]
