"""Fuse Softmax and LayerNormalization with the elementwise ops computing their input:
kiln::FusedSoftmax and kiln::FusedLayerNormalization (compiler/ops/fused_normalization.py).

Unfused, every elementwise op before a Softmax or LayerNormalization writes a whole tensor that
the next op reads back, and the normalization then reads its input in up to three sweeps; fused,
the kernel computes its input once per row into its output, where the sweeps find it in cache.

- A LayerNorm written out the way exporters emit it (ONNX before opset 17 has no
  LayerNormalization): mean = ReduceMean(x), d = Sub(x, mean), var = ReduceMean(Pow(d, 2) or
  Mul(d, d)), y = Div(d, Sqrt(Add(var, epsilon))), then optionally a Mul by a scale and an Add of
  a bias that hold one value per normalized element, the means over the trailing axes with
  keepdims and every intermediate read only by the pattern, becomes one FusedLayerNormalization.
  The kernel multiplies by 1 / std where Div divides by std: results may differ in the last bit.
- A Softmax over the last axis and a LayerNormalization (a written-out one included) take the
  producers of their input X, grown back as fuse-elementwise grows a group: cpu elementwise ops
  (fuse_elementwise.fusible) of X's very type, so no step is recomputed for broadcast copies,
  whose results are read only inside the group. A Softmax or LayerNormalization with no producer
  to take stays as it is.

It runs after fuse-epilogues: a bias, scale, mask or residual Add right after a Conv, Gemm or
MatMul costs nothing in that kernel's store loop, so this pass takes the elementwise work left
(the embedding sum before a first LayerNorm, the scale and mask after an Einsum, ...). Nodes
inside subgraphs are left alone (the cpu target compiles no subgraphs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.codegen.llvm.kernels.normalization import per_normalized_element
from compiler.codegen.llvm.kernels.registry import kernel_for
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.fused_normalization import FUSED
from compiler.ops.reduce_axes import axes_input, reduce_axes
from compiler.passes.fuse_elementwise import encode_group, fusible
from compiler.passes.manager import PassContext, log, register_pass

FLOATS = frozenset({"float32", "float64"})
LAYER_NORMALIZATION_VERSION = 17  # the opset that defines LayerNormalization


@dataclass
class _Anchor:
    """A normalization to fuse: its own nodes in topological order (the last one's result becomes the
    fused node's), its input X, and the fused op's type, attributes, version and parameters (Scale, B)."""

    nodes: list[Node]
    x: Value
    op_type: str
    attrs: dict
    version: int | None
    parameters: list[Value | None]


def _is(node: Node | None, op_type: str) -> bool:
    return node is not None and node.domain == "" and node.op_type == op_type


def _float(value_type) -> bool:
    return isinstance(value_type, TensorType) and value_type.is_static and value_type.dtype in FLOATS


def _sole_user(graph: Graph, value: Value) -> Node | None:
    """The one node reading `value` (through one input or several), unless a graph output is `value` too."""
    users = {user for user, _ in graph.uses(value)}
    return graph.node(users.pop()) if len(users) == 1 and not graph.is_graph_output(value) else None


def _scalar(graph: Graph, value: Value | None) -> float | None:
    constant = graph.constant_value(value)
    return float(constant.reshape(-1)[0]) if constant is not None and constant.size == 1 else None


def _trailing_mean(graph: Graph, node: Node | None, source: Value, axes: list[int] | None = None) -> list[int] | None:
    """The axes of a ReduceMean of `source` with keepdims over trailing axes (`axes` when given), else None."""
    if not _is(node, "ReduceMean") or node.attrs.get("keepdims", 1) != 1 or graph.input_values(node)[0] != source:
        return None
    if axes_input(graph, node) is None:
        return None
    found = reduce_axes(graph, node)
    rank = len(graph.type_of(source).shape)
    if not found or found != list(range(found[0], rank)) or (axes is not None and found != axes):
        return None
    return found


def _square(graph: Graph, node: Node, d: Value) -> bool:
    inputs = graph.input_values(node)
    if _is(node, "Mul"):
        return inputs == [d, d]
    exponent = graph.constant_value(inputs[1]) if _is(node, "Pow") and inputs[0] == d else None
    return exponent is not None and bool(np.all(exponent == 2))


def _parameter(graph: Graph, node: Node | None, op_type: str, operand: Value, x_type: TensorType,
               axis: int) -> Value | None:
    """The other operand of `node` = op_type(operand, other) (either order) when it holds one value per
    normalized element (a LayerNormalization Scale or B), else None."""
    if not _is(node, op_type) or node.outputs[0] != x_type:
        return None
    others = [value for value in graph.input_values(node) if value != operand]
    if len(others) != 1:
        return None
    return others[0] if per_normalized_element(graph.type_of(others[0]).shape, x_type.shape[axis:]) else None


def _written_out_layer_norm(graph: Graph, mean: Node) -> _Anchor | None:
    """The LayerNorm pattern starting at ReduceMean `mean` (see the module docstring), else None."""
    x = graph.input_values(mean)[0] if _is(mean, "ReduceMean") else None
    if x is None or not _float(graph.type_of(x)):
        return None
    x_type = graph.type_of(x)
    axes = _trailing_mean(graph, mean, x)
    sub = _sole_user(graph, Value(mean.name)) if axes else None
    if not _is(sub, "Sub") or graph.input_values(sub) != [x, Value(mean.name)] or sub.outputs[0] != x_type:
        return None
    d = Value(sub.name)
    users = sorted({user for user, _ in graph.uses(d)})
    if len(users) != 2 or graph.is_graph_output(d) or math.prod(x_type.shape[axes[0]:]) < 2:
        return None
    square, div = (graph.node(name) for name in users)
    if not _square(graph, square, d):
        square, div = div, square
    if not _square(graph, square, d):
        return None
    variance = _sole_user(graph, Value(square.name))
    if _trailing_mean(graph, variance, Value(square.name), axes) is None:
        return None
    add = _sole_user(graph, Value(variance.name))
    epsilon_values = [v for v in graph.input_values(add) if v != Value(variance.name)] if _is(add, "Add") else []
    epsilon = _scalar(graph, epsilon_values[0]) if len(epsilon_values) == 1 else None
    sqrt = _sole_user(graph, Value(add.name)) if epsilon is not None else None
    if not _is(sqrt, "Sqrt") or _sole_user(graph, Value(sqrt.name)) is not div or not _is(div, "Div") \
            or graph.input_values(div) != [d, Value(sqrt.name)] or div.outputs[0] != x_type:
        return None
    nodes = [mean, sub, square, variance, add, sqrt, div]
    parameters: list[Value | None] = []
    for op_type in ("Mul", "Add"):
        following = _sole_user(graph, Value(nodes[-1].name))
        parameter = _parameter(graph, following, op_type, Value(nodes[-1].name), x_type, axes[0])
        parameters.append(parameter)
        if parameter is not None:
            nodes.append(following)
    return _Anchor(nodes, x, FUSED["LayerNormalization"], {"axis": axes[0], "epsilon": epsilon},
                   LAYER_NORMALIZATION_VERSION, parameters)


def _normalization(graph: Graph, node: Node) -> _Anchor | None:
    """A Softmax over the last axis or a LayerNormalization of Y only that the cpu target compiles, else None."""
    if node.domain != "" or node.op_type not in FUSED or len(node.outputs) != 1:
        return None
    inputs = graph.input_values(node)
    x_type = graph.type_of(inputs[0])
    if not _float(x_type) or kernel_for(node).check(graph, node) is not None:
        return None
    rank = len(x_type.shape)
    axis = node.attrs.get("axis", -1) % rank
    if (node.op_type == "Softmax" and axis != rank - 1) or math.prod(x_type.shape[axis:]) < 2:
        return None
    parameters = (inputs[1:] + [None, None])[:2] if node.op_type == "LayerNormalization" else []
    return _Anchor([node], inputs[0], FUSED[node.op_type], dict(node.attrs), node.version, parameters)


def _prologue(graph: Graph, anchor: _Anchor) -> set[str]:
    """Names of the elementwise nodes computing X taken into the fused node."""
    inside = {node.name for node in anchor.nodes}
    x_type = graph.type_of(anchor.x)
    members: set[str] = set()
    grown = True
    while grown:
        grown = False
        for value in [anchor.x, *(v for member in sorted(members) for v in graph.input_values(member))]:
            if value is None or value.node in members or value.node in inside:
                continue
            node = graph.node(value.node)
            if (fusible(graph, node) and node.outputs[0] == x_type and not graph.is_graph_output(value)
                    and all(user in members or user in inside for user, _ in graph.uses(value))):
                members.add(node.name)
                grown = True
    return members


def _fuse(graph: Graph, anchor: _Anchor, prologue: list[Node]) -> None:
    operands, steps = encode_group(graph, prologue) if prologue else ([anchor.x], [])
    members = prologue + anchor.nodes
    last = anchor.nodes[-1]
    parameters = list(anchor.parameters)
    if parameters and parameters[0] is None:  # Scale is required: a written-out LayerNorm without one scales by 1
        parameters[0] = graph.add_constant(np.ones(1, graph.type_of(anchor.x).dtype), f"{last.name}.scale")
    constants = {v.node for m in anchor.nodes for v in graph.input_values(m) if graph.constant_value(v) is not None}
    attrs = {**anchor.attrs, "prologue": steps, "fused_nodes": [member.name for member in members]}
    graph.replace_node(last, anchor.op_type, [*parameters, *operands], attrs, domain=KILN_DOMAIN,
                       version=anchor.version)
    for member in reversed(members[:-1]):
        graph.remove_node(member.name)
    for name in sorted(constants):  # the pattern's epsilon and exponent
        if not graph.users(name) and not graph.is_graph_output(Value(name)):
            graph.remove_node(name)
    log.info("fuse-normalization: %s fused into one %s kernel", ", ".join(m.name for m in members), anchor.op_type)


@register_pass("fuse-normalization")
def fuse_normalization(graph: Graph, ctx: PassContext | None = None) -> Graph:
    order = graph.topological_order()
    position = {node.name: index for index, node in enumerate(order)}
    for name in position:
        if name not in graph:
            continue
        node = graph.node(name)
        anchor = _written_out_layer_norm(graph, node) or _normalization(graph, node)
        if anchor is None:
            continue
        prologue = [graph.node(member) for member in sorted(_prologue(graph, anchor), key=position.__getitem__)]
        if prologue or len(anchor.nodes) > 1:
            _fuse(graph, anchor, prologue)
    return graph
