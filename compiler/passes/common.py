"""Helpers the built-in passes share: which ops must never be evaluated early or merged,
swapping a node's outputs for constants without losing their value names, and inlining a
subgraph (a function body, an If branch) into a graph."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ops.generator import RANDOM

RANDOM_OPS = frozenset(RANDOM)
"""ONNX ops that draw random numbers: two runs (or two identical nodes) give different results."""


def is_inference_dropout(graph: Graph, node: Node) -> bool:
    """A Dropout whose training_mode input is absent or a constant False: it passes its data through."""
    if node.domain != "" or node.op_type != "Dropout":
        return False
    inputs = graph.input_values(node)
    training_mode = inputs[2] if len(inputs) > 2 else None
    if training_mode is None:
        return True
    flag = graph.constant_value(training_mode)
    return flag is not None and not flag.any()


def is_random(graph: Graph, node: Node) -> bool:
    """True for random draws and for a Dropout that may be in training mode."""
    if node.domain != "":
        return False
    return node.op_type in RANDOM_OPS or (node.op_type == "Dropout" and not is_inference_dropout(graph, node))


def is_used(graph: Graph, value: Value) -> bool:
    return bool(graph.uses(value)) or graph.is_graph_output(value)


def replace_with_constants(graph: Graph, node: Node, arrays: dict[int, np.ndarray]) -> None:
    """Remove `node`, putting a Constant in place of each output index in `arrays`.

    Each constant takes over the value name of the output it replaces. Outputs not in
    `arrays` must be unused. Stand-in constants hold the uses while `node` is removed,
    because a value name is only free again once its node is gone.
    """
    names = {index: node.output_names[index] for index in arrays}
    stand_ins = {index: graph.add_constant(array) for index, array in arrays.items()}
    for index, stand_in in stand_ins.items():
        graph.replace_all_uses(Value(node.name, index), stand_in)
    graph.remove_node(node.name)
    for index, stand_in in stand_ins.items():
        graph.replace_all_uses(stand_in, graph.add_constant(arrays[index], names[index]))
        graph.remove_node(stand_in.node)


def inline(graph: Graph, body: Graph, inputs: list[Value], prefix: str) -> list[Value]:
    """Copy `body`'s nodes into `graph`, feeding its inputs with `inputs`; returns its output values."""
    mapped: dict[Value, Value] = {Value(name, 0): value for name, value in zip(body.inputs, inputs)}
    for body_node in body.topological_order():
        if body_node.is_input:
            continue
        if body_node.is_constant:
            mapped[Value(body_node.name, 0)] = graph.add_constant(body_node.attrs["value"], prefix + body_node.name)
            continue
        operands = [None if v is None else mapped[v] for v in body.input_values(body_node)]
        copy = graph.add_node(body_node.op_type, operands, dict(body_node.attrs), domain=body_node.domain,
                              version=body_node.version, outputs=list(body_node.outputs), name=prefix + body_node.name,
                              output_names=[prefix + n for n in body_node.output_names])
        for index in range(len(body_node.outputs)):
            mapped[Value(body_node.name, index)] = Value(copy.name, index)
    return [mapped[value] for _, value in body.outputs]


def keeps_outputs_distinct(graph: Graph, node: Node, source: Value) -> bool:
    """False when bypassing `node` would make a graph output alias a graph input or another graph output."""
    if not graph.is_graph_output(Value(node.name, 0)):
        return True
    return source.node not in graph.inputs and not graph.is_graph_output(source)
