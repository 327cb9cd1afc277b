"""Collapse chains of Reshape, Flatten, Squeeze and Unsqueeze; drop the ones that keep the shape.

These ops only reinterpret the shape of contiguous data, so with static shapes a chain of
them is one Reshape from the chain's input to the last result, with a constant shape. One that
gives back its input's shape does nothing and is dropped (exporters leave many, e.g. the
Flatten/Reshape pair around a Softmax that is already 2-D). Fewer nodes between producers and
consumers let later passes match patterns across them; the data is never touched.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.common import keeps_outputs_distinct
from compiler.passes.manager import PassContext, register_pass

VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def _static(value_type) -> bool:
    return isinstance(value_type, TensorType) and value_type.is_static


def _is_view(graph: Graph, node: Node) -> bool:
    """A shape-only op whose input and output shapes are known."""
    return (node.domain == "" and node.op_type in VIEW_OPS and _static(node.outputs[0])
            and _static(graph.input_types(node)[0]))


def _collapse(graph: Graph, node: Node) -> Node:
    """`node` reads another view: one Reshape from that view's input replaces it."""
    inner = graph.node(graph.input_values(node)[0].node)
    shape = node.outputs[0].shape
    constant = graph.add_constant(np.array(shape, np.int64), f"{node.name}.shape")
    attrs = {"allowzero": 1} if 0 in shape else {}  # a 0 in the shape means "keep that dim" unless allowzero
    reshape = graph.replace_node(node, "Reshape", [graph.input_values(inner)[0], constant], attrs, version=14)
    if not graph.uses(Value(inner.name)) and not graph.is_graph_output(Value(inner.name)):
        graph.remove_node(inner.name)
    return reshape


@register_pass("fold-reshapes")
def fold_reshapes(graph: Graph, ctx: PassContext | None = None) -> Graph:
    for node in graph.topological_order():
        for subgraph in graph.subgraphs(node).values():
            fold_reshapes(subgraph, ctx)
        if not _is_view(graph, node):
            continue
        source = graph.input_values(node)[0]
        if _is_view(graph, graph.node(source.node)):
            node = _collapse(graph, node)
            source = graph.input_values(node)[0]
        if graph.type_of(source).shape == node.outputs[0].shape and keeps_outputs_distinct(graph, node, source):
            graph.replace_all_uses(Value(node.name), source)
            graph.remove_node(node.name)
    return graph
