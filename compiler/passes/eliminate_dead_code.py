"""Remove every node whose results cannot reach a graph output.

Imports and other rewrites (folding, CSE, identity removal) leave nodes and constants
nobody reads; they would still be computed and stored. Graph inputs are part of the
signature and always stay, in subgraphs too. Subgraphs of surviving nodes are cleaned.
"""

from __future__ import annotations

from compiler.ir.graph import Graph
from compiler.passes.manager import PassContext, register_pass


def _live_nodes(graph: Graph) -> set[str]:
    """The nodes producing graph outputs and everything they depend on."""
    live: set[str] = set()
    pending = [value.node for _, value in graph.outputs]
    while pending:
        name = pending.pop()
        if name not in live:
            live.add(name)
            pending.extend(graph.nx.predecessors(name))
    return live


@register_pass("eliminate-dead-code")
def eliminate_dead_code(graph: Graph, ctx: PassContext | None = None) -> Graph:
    live = _live_nodes(graph)
    for node in reversed(graph.topological_order()):  # consumers go before their producers
        if node.name not in live and not node.is_input:
            graph.remove_node(node.name)
    for node in graph.topological_order():
        for subgraph in graph.subgraphs(node).values():
            eliminate_dead_code(subgraph, ctx)
    return graph
