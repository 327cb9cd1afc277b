"""Helpers the built-in passes share: which ops must never be evaluated early or merged,
and swapping a node's outputs for constants without losing their value names."""

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
