"""Type and shape inference over the whole graph, subgraphs first.

Each node's output types come from its op definition (compiler/ops). A type the op cannot
tell (None) keeps whatever the graph recorded before, so declared types are not lost.
"""

from __future__ import annotations

from compiler.ir.graph import Graph, Node
from compiler.ir.types import SequenceType, TensorType
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
        if node.op_type == "Scan" and (node.version or 9) >= 9:
            for name, outer_type in zip(own, _scan_body_input_types(node, own, input_types)):
                recorded = subgraph.node(name).outputs[0]
                if recorded is None or (isinstance(recorded, TensorType) and not recorded.is_static):
                    subgraph.node(name).outputs[0] = outer_type or recorded


def _scan_body_input_types(node: Node, own: list[str], input_types: list) -> list:
    """Scan's body sees its states as they are and one slice of each scanned input (the scan axis removed)."""
    num_in = node.attrs["num_scan_inputs"]
    num_state = len(own) - num_in
    axes = node.attrs.get("scan_input_axes", [0] * num_in)
    slices = []
    for outer_type, axis in zip(input_types[num_state:num_state + num_in], axes):
        if isinstance(outer_type, TensorType) and outer_type.shape is not None:
            shape = list(outer_type.shape)
            del shape[axis % len(shape)]
            slices.append(TensorType(outer_type.dtype, tuple(shape)))
        else:
            slices.append(None)
    return list(input_types[:num_state]) + slices


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

