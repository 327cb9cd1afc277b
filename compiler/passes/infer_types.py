"""Type and shape inference over the whole graph, subgraphs first.

Each node's output types come from its op definition (compiler/ops). A type the op cannot
tell (None) keeps whatever the graph recorded before, so declared types are not lost.
"""

from __future__ import annotations

from compiler.ir.graph import Graph, Node
from compiler.ir.types import SequenceType
from compiler.ops.registry import infer_node
from compiler.passes.manager import PassContext, register_pass


def _seed_subgraph_inputs(graph: Graph, node: Node) -> None:
    """Give captured subgraph inputs (and untyped Loop/SequenceMap body inputs) their outer types."""
    input_types = graph.input_types(node)
    for subgraph in graph.subgraphs(node).values():
        captured = [n for n in subgraph.inputs if "captured_from" in subgraph.node(n).attrs]
        for name, outer_type in zip(captured, input_types[node.num_inputs - len(captured):]):
            subgraph.node(name).outputs[0] = outer_type
        own = [n for n in subgraph.inputs if n not in captured]
        if node.op_type == "SequenceMap":
            for name, outer_type in zip(own, input_types):
                element = outer_type.elem if isinstance(outer_type, SequenceType) else outer_type
                if subgraph.node(name).outputs[0] is None:
                    subgraph.node(name).outputs[0] = element
        if node.op_type == "Loop":
            for name, outer_type in zip(own[2:], input_types[2:]):
                if subgraph.node(name).outputs[0] is None:
                    subgraph.node(name).outputs[0] = outer_type


def infer_types(graph: Graph, ctx: PassContext | None = None) -> Graph:
    for node in graph.topological_order():
        if node.is_input or node.is_constant:
            continue
        if graph.subgraphs(node):
            _seed_subgraph_inputs(graph, node)
            for subgraph in graph.subgraphs(node).values():
                infer_types(subgraph, ctx)
        refresh_types(graph, node)
    return graph


def refresh_types(graph: Graph, node: Node) -> None:
    """Re-infer one node's output types from its current inputs (keeping what stays unknown)."""
    inputs = graph.input_values(node)
    inferred = infer_node(node, graph.input_types(node), [graph.constant_value(v) for v in inputs])
    node.outputs = [new if new is not None else old for new, old in zip(inferred, node.outputs)]


register_pass("infer-types")(infer_types)

