"""Keep QDQ chains 8-bit: move DequantizeLinear below ops that commute with it, cancel Q(DQ(x)).

A QDQ graph wraps even MaxPool, Reshape, Flatten, Transpose, Squeeze and Unsqueeze in
DequantizeLinear -> op -> QuantizeLinear with the same parameters (onnxruntime's quantize_static
does). With a per-tensor DequantizeLinear these ops commute with it exactly (they move or pick
elements; dequantization is monotone), so op(DQ(x_q)) becomes DQ(op(x_q)): the op runs on the
8-bit tensor. A QuantizeLinear of DequantizeLinear with equal scale, zero point and type is then
the identity and goes, so int8 values flow from one fused int8 kernel to the next
(fuse-quantized-linear runs after this pass).
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.common import is_used
from compiler.passes.manager import PassContext, log, register_pass

MOVABLE = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"})
EIGHT_BITS = frozenset({"uint8", "int8"})


def per_tensor(graph: Graph, node: Node | None, op_type: str) -> tuple[Value, np.ndarray, np.ndarray] | None:
    """(quantized value, scale, zero point) of a per-tensor QuantizeLinear/DequantizeLinear with constant
    parameters on an 8-bit side; None otherwise."""
    if node is None or node.domain != "" or node.op_type != op_type or node.attrs.get("block_size", 0):
        return None
    values = graph.input_values(node) + [None]
    scale = graph.constant_value(values[1])
    zero_point = graph.constant_value(values[2]) if values[2] is not None else np.zeros((), np.uint8)
    if scale is None or zero_point is None or scale.size != 1 or zero_point.size != 1:
        return None
    quantized = values[0] if op_type == "DequantizeLinear" else Value(node.name)
    dtype = graph.type_of(quantized).dtype if graph.type_of(quantized) is not None else None
    return (values[0], scale, zero_point) if dtype in EIGHT_BITS else None


def _producer(graph: Graph, value: Value | None) -> Node | None:
    return None if value is None else graph.node(value.node)


def remove_if_unused(graph: Graph, name: str) -> None:
    """Remove a (one-output) node nobody reads any more."""
    if name in graph and not is_used(graph, Value(name)):
        graph.remove_node(name)


def _sink(graph: Graph, node: Node) -> bool:
    """op(DQ(x_q), ...) -> DQ(op(x_q, ...)); True when rewritten."""
    if node.domain != "" or node.op_type not in MOVABLE or len(node.outputs) != 1:
        return False
    values = graph.input_values(node)
    dequantize = _producer(graph, values[0])
    found = per_tensor(graph, dequantize, "DequantizeLinear")
    out = node.outputs[0]
    if found is None or not isinstance(out, TensorType):
        return False
    quantized, _, _ = found
    dtype = graph.type_of(quantized).dtype
    moved = graph.add_node(node.op_type, [quantized, *values[1:]], node.attrs, version=node.version,
                           outputs=[TensorType(dtype, out.shape)], name=f"{node.name}.q")
    parameters = graph.input_values(dequantize)[1:]
    restored = graph.add_node("DequantizeLinear", [Value(moved.name), *parameters], dequantize.attrs,
                              version=dequantize.version, outputs=[out], name=f"{node.name}.dq")
    graph.replace_all_uses(Value(node.name), Value(restored.name))
    graph.remove_node(node.name)
    remove_if_unused(graph, dequantize.name)
    log.info("sink-dequantize: %s runs on %s before its DequantizeLinear", node.name, dtype)
    return True


def _cancel(graph: Graph, node: Node) -> bool:
    """Q(DQ(x_q)) with equal parameters and type -> x_q; True when rewritten."""
    quantize = per_tensor(graph, node, "QuantizeLinear")
    if quantize is None:
        return False
    dequantize = per_tensor(graph, _producer(graph, graph.input_values(node)[0]), "DequantizeLinear")
    if dequantize is None:
        return False
    source = dequantize[0]
    same = (graph.type_of(source).dtype == node.outputs[0].dtype and
            np.float32(dequantize[1].ravel()[0]) == np.float32(quantize[1].ravel()[0]) and
            int(dequantize[2].ravel()[0]) == int(quantize[2].ravel()[0]))
    if not same:
        return False
    dequantizer = graph.input_values(node)[0].node
    graph.replace_all_uses(Value(node.name), source)
    graph.remove_node(node.name)
    remove_if_unused(graph, dequantizer)
    return True


@register_pass("sink-dequantize")
def sink_dequantize(graph: Graph, ctx: PassContext | None = None) -> Graph:
    changed = True
    while changed:
        changed = False
        for node in graph.topological_order():
            if node.name in graph and (_sink(graph, node) or _cancel(graph, node)):
                changed = True
    return graph
