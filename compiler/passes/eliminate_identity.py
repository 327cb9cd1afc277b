"""Remove Identity nodes and inference-mode Dropout nodes.

Both only pass their data through, yet they block pattern matching and cost a copy at
run time. Uses of the output are pointed at the input instead. Subgraphs are cleaned too.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.common import is_inference_dropout, is_used, keeps_outputs_distinct, replace_with_constants
from compiler.passes.manager import PassContext, register_pass


def _remove_identity(graph: Graph, node: Node) -> None:
    source = graph.input_values(node)[0]
    if keeps_outputs_distinct(graph, node, source):
        graph.replace_all_uses(Value(node.name, 0), source)
        graph.remove_node(node.name)


def _remove_dropout(graph: Graph, node: Node) -> None:
    """Output 0 becomes the data; a used mask becomes all-true, which needs the data's static shape."""
    source = graph.input_values(node)[0]
    if not keeps_outputs_distinct(graph, node, source):
        return
    masks = {}
    if len(node.outputs) > 1 and is_used(graph, Value(node.name, 1)):
        data_type = graph.type_of(source)
        if not (isinstance(data_type, TensorType) and data_type.is_static):
            return
        masks[1] = np.ones(data_type.shape, dtype=np.bool_)
    graph.replace_all_uses(Value(node.name, 0), source)
    replace_with_constants(graph, node, masks)


@register_pass("eliminate-identity")
def eliminate_identity(graph: Graph, ctx: PassContext | None = None) -> Graph:
    for node in graph.topological_order():
        for subgraph in graph.subgraphs(node).values():
            eliminate_identity(subgraph, ctx)
        if node.domain == "" and node.op_type == "Identity":
            _remove_identity(graph, node)
        elif is_inference_dropout(graph, node):
            _remove_dropout(graph, node)
    return graph
