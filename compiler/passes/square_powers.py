"""square-powers: Pow(x, 2) with a constant exponent becomes Mul(x, x).

Exporters write squares as Pow (variances, L2 norms, the written-out LayerNorm). A multiply is one
correctly rounded operation, like the pow of a square, so the result is the same to the bit, and it
vectorizes and fuses where a pow call does not.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph
from compiler.ir.types import TensorType
from compiler.passes.manager import PassContext, log, register_pass


def _squares(graph: Graph, node) -> bool:
    if node.op_type != "Pow" or node.domain != "":
        return False
    base, exponent = graph.input_values(node)
    base_type, value = graph.type_of(base), graph.constant_value(exponent)
    return (isinstance(base_type, TensorType) and base_type == node.outputs[0] and value is not None
            and value.size == 1 and float(np.ravel(value)[0]) == 2.0)


@register_pass("square-powers")
def square_powers(graph: Graph, ctx: PassContext | None = None) -> Graph:
    for node in graph.topological_order():
        for subgraph in graph.subgraphs(node).values():
            square_powers(subgraph, ctx)
        if _squares(graph, node):
            base, exponent = graph.input_values(node)
            log.info("square-powers: %s (Pow by 2) becomes a multiply", node.name)
            node.op_type, node.version, node.attrs = "Mul", 14, {}  # in place: the node keeps its name
            graph.set_input(node, 1, base)
            if not graph.uses(exponent) and not graph.is_graph_output(exponent):
                graph.remove_node(exponent.node)
    return graph
