"""Merge nodes that compute the same value: same op, version, attributes and input values.

Exporters and frontends often repeat work (the same Shape/Gather chain per layer, one
copy of a constant per use); computing it once saves time and memory. Identical
constants merge the same way. The first node in topological order is kept, so the
result is deterministic. Random ops never merge; nodes holding subgraphs do not either,
but each subgraph is cleaned on its own.
"""

from __future__ import annotations

from typing import Hashable

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.passes.common import is_random
from compiler.passes.manager import PassContext, register_pass


def _freeze(value) -> Hashable:
    """A hashable stand-in for an attribute value; arrays compare by dtype, shape and contents."""
    if isinstance(value, np.ndarray):
        contents = tuple(value.ravel().tolist()) if value.dtype == object else value.tobytes()
        return ("array", str(value.dtype), value.shape, contents)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_freeze(item) for item in value))
    return (type(value).__name__, value)


def _key(graph: Graph, node: Node) -> Hashable | None:
    """What a node computes, as a dictionary key; None when it must not be merged."""
    if node.is_input or graph.subgraphs(node) or is_random(graph, node):
        return None
    attrs = tuple((name, _freeze(value)) for name, value in sorted(node.attrs.items()))
    return (node.op_type, node.domain, node.version, len(node.outputs), attrs, tuple(graph.input_values(node)))


def _would_alias_outputs(graph: Graph, kept: Node, duplicate: Node) -> bool:
    """True when merging would make two differently named graph outputs one value."""
    return any(graph.is_graph_output(Value(kept.name, i)) and graph.is_graph_output(Value(duplicate.name, i))
               for i in range(len(kept.outputs)))


@register_pass("eliminate-common-subexpressions")
def eliminate_common_subexpressions(graph: Graph, ctx: PassContext | None = None) -> Graph:
    first: dict[Hashable, Node] = {}
    for node in graph.topological_order():
        for subgraph in graph.subgraphs(node).values():
            eliminate_common_subexpressions(subgraph, ctx)
        key = _key(graph, node)
        if key is None:
            continue
        kept = first.setdefault(key, node)
        if kept is node or _would_alias_outputs(graph, kept, node):
            continue
        for index in range(len(node.outputs)):
            graph.replace_all_uses(Value(node.name, index), Value(kept.name, index))
        graph.remove_node(node.name)
    return graph
