"""An If with a run-time condition becomes both branches and a Where per output (if-conversion).

For a target without control flow this keeps a model with a data-dependent If compilable:
both branches are inlined and computed, and Where picks each output by the condition. It
applies only when the two branches give outputs of the same static type (a select needs
them), and costs the work of the branch not taken. Kiln's kernels never trap on the values
an untaken branch may see (out-of-range indices are clamped or skipped), so computing it is
safe.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.common import inline
from compiler.passes.infer_types import infer_types
from compiler.passes.manager import PassContext, register_pass


def _output_types(branch: Graph) -> list:
    return [branch.type_of(value) for _, value in branch.outputs]


def _selectable(node: Node) -> bool:
    then_types, else_types = _output_types(node.attrs["then_branch"]), _output_types(node.attrs["else_branch"])
    return all(isinstance(a, TensorType) and a.is_static and a == b for a, b in zip(then_types, else_types))


def _select(graph: Graph, node: Node) -> None:
    operands = graph.input_values(node)
    scalar_shape = graph.add_constant(np.zeros(0, np.int64), f"{node.name}/scalar")
    condition = Value(graph.add_node("Reshape", [operands[0], scalar_shape], version=14,
                                     name=f"{node.name}/condition").name)  # a [1] condition must not broadcast
    taken = inline(graph, node.attrs["then_branch"], operands[1:], f"{node.name}/then/")
    other = inline(graph, node.attrs["else_branch"], operands[1:], f"{node.name}/else/")
    for index, (then_value, else_value) in enumerate(zip(taken, other)):
        select = graph.add_node("Where", [condition, then_value, else_value], version=16, name=f"{node.name}/select")
        graph.replace_all_uses(Value(node.name, index), Value(select.name, 0))
    graph.remove_node(node.name)


@register_pass("if-to-select")
def if_to_select(graph: Graph, ctx: PassContext | None = None) -> Graph:
    from compiler.targets.base import get_target

    target = get_target(ctx.target if ctx else "ref")
    changed = False
    for node in graph.topological_order():
        if node.domain == "" and node.op_type == "If" and target.node_problem(graph, node) and _selectable(node):
            _select(graph, node)
            changed = True
    return infer_types(graph, ctx) if changed else graph
