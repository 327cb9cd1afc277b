"""Fuse connected elementwise nodes into one kiln::FusedElementwise node (compiler/ops/fused_elementwise.py).

A chain such as Mul -> Add -> Relu otherwise writes and re-reads a whole tensor between each
pair of ops; fused, one broadcasting loop computes the expression per element. A group grows
from its last node back through producers that are elementwise ops of the cpu target (its
elementwise OPS table, and Cast between float types) when every use of the producer's result
is inside the group (a value the rest of the graph, or the graph outputs, also read stops the
growth there) and the result is as large as the group's output, so no step is recomputed for
broadcast copies. Only the last node's result leaves the group, so fusing never makes a cycle.

Softmax, LayerNormalization and reductions are not fused with their neighbours: they need a
row-wise reduction before the elementwise tail, which one elementwise loop cannot express.
Nodes inside subgraphs are left alone (the cpu target compiles no subgraphs).
"""

from __future__ import annotations

import math

from compiler.codegen.llvm.kernels.fused_elementwise import step_problem
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.fused_elementwise import OP_TYPE, encode_step
from compiler.passes.manager import PassContext, log, register_pass


def fusible(graph: Graph, node: Node) -> bool:
    """An ONNX op with one static output that the cpu elementwise loop computes (fuse-normalization asks too)."""
    if node.domain != "" or len(node.outputs) != 1:
        return False
    types = graph.input_types(node)
    if not all(isinstance(t, TensorType) and t.is_static for t in [*filter(None, types), node.outputs[0]]):
        return False
    return step_problem(node, [None if t is None else t.dtype for t in types], node.outputs[0].dtype) is None


def _group(graph: Graph, root: Node, available) -> set[str]:
    """Names of the nodes fused with `root`: producers absorbed until none more qualifies."""
    members = {root.name}
    size = math.prod(root.outputs[0].shape)
    grown = True
    while grown:
        grown = False
        for member in list(members):
            for value in graph.input_values(member):
                if value is None or value.node in members or not available(value.node):
                    continue
                if (not graph.is_graph_output(value) and math.prod(graph.type_of(value).shape) == size
                        and all(user in members for user, _ in graph.uses(value))):
                    members.add(value.node)
                    grown = True
    return members


def encode_group(graph: Graph, members: list[Node]) -> tuple[list[Value], list]:
    """(the values `members` read from outside, their `steps` attribute) for members in topological order."""
    names = {member.name for member in members}
    inputs: list[Value] = []
    number: dict[Value, int] = {}
    for member in members:
        for value in graph.input_values(member):
            if value is not None and value.node not in names and value not in number:
                number[value] = len(inputs)
                inputs.append(value)
    for index, member in enumerate(members):
        number[Value(member.name, 0)] = len(inputs) + index
    steps = [encode_step(member, [None if v is None else number[v] for v in graph.input_values(member)])
             for member in members]
    return inputs, steps


def _fuse(graph: Graph, members: list[Node]) -> None:
    """Replace `members` (in topological order, the last one's result leaving the group) by one node."""
    inputs, steps = encode_group(graph, members)
    attrs = {"steps": steps, "fused_nodes": [member.name for member in members]}
    graph.replace_node(members[-1], OP_TYPE, inputs, attrs, domain=KILN_DOMAIN)
    for member in reversed(members[:-1]):
        graph.remove_node(member.name)


@register_pass("fuse-elementwise")
def fuse_elementwise(graph: Graph, ctx: PassContext | None = None) -> Graph:
    order = graph.topological_order()
    position = {node.name: index for index, node in enumerate(order)}
    candidates = {node.name for node in order if fusible(graph, node)}
    taken: set[str] = set()
    for root in reversed(order):
        if root.name not in candidates or root.name in taken:
            continue
        members = _group(graph, root, lambda name: name in candidates and name not in taken)
        taken |= members
        if len(members) > 1:
            ordered = [graph.node(name) for name in sorted(members, key=position.__getitem__)]
            log.info("fuse-elementwise: %s fused into one loop nest",
                     ", ".join(f"{m.name} ({m.op_type})" for m in ordered))
            _fuse(graph, ordered)
    return graph
