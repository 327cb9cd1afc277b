"""An If whose condition is a constant is replaced by the branch it always takes.

Function bodies (AffineGrid, the attention family, ...) branch on attributes and ranks that
are known at compile time; inlining the taken branch removes the control flow, so the rest
folds and compiles like straight-line code. Called by fold-constants on every If it meets.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.passes.common import inline


def inline_taken_branch(graph: Graph, node: Node) -> bool:
    """Inline the branch of If `node` that its constant condition selects; False when the
    condition is not a constant (the graph is then untouched)."""
    operands = graph.input_values(node)
    condition = graph.constant_value(operands[0])
    if condition is None or condition.size != 1:
        return False
    branch = node.attrs["then_branch" if bool(np.asarray(condition).reshape(())) else "else_branch"]
    results = inline(graph, branch, operands[1:], f"{node.name}/")
    for index, result in enumerate(results):
        graph.replace_all_uses(Value(node.name, index), result)
    graph.remove_node(node.name)
    return True
