"""Fuse QuantizeLinear([Relu](Add|Sum(DequantizeLinear(a), DequantizeLinear(b)))) into kiln::QuantizedAdd.

The residual additions of QDQ networks (ResNet's shortcuts) are otherwise four passes over the
tensor: two DequantizeLinear, the Add (with its Relu) and a QuantizeLinear, none of which the
elementwise fusion takes. kiln::QuantizedAdd (compiler/ops/quantized_add.py) is one pass with the
same float32 steps, so the result is bit-identical. It takes 8-bit a and b with per-tensor constant
parameters, a of the result's static shape and b of it or of its last dims (a bias, as onnxruntime
quantizes the bias Add after a MatMul); the Add's (and Relu's) result must have no other reader.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassContext, log, register_pass
from compiler.passes.sink_dequantize import per_tensor, remove_if_unused

LIMITS = {"uint8": (0, 255), "int8": (-128, 127)}


def _only_reader(graph: Graph, node: Node) -> Node | None:
    uses = graph.uses(Value(node.name))
    if len(uses) != 1 or graph.is_graph_output(Value(node.name)):
        return None
    return graph.node(uses[0][0])


def _repeats(shape: tuple, full: tuple) -> bool:
    """Whether a tensor of `shape` broadcast to `full` repeats whole (its dims, leading 1s aside, are full's last)."""
    dims = list(shape)
    while dims and dims[0] == 1:
        dims.pop(0)
    return len(dims) <= len(full) and tuple(dims) == tuple(full[len(full) - len(dims):])


def _parameters(found) -> tuple[float, int]:
    _, scale, zero_point = found
    return float(np.float32(scale.ravel()[0])), int(zero_point.ravel()[0])


def _fuse(graph: Graph, quantize: Node) -> bool:
    output = per_tensor(graph, quantize, "QuantizeLinear")
    if output is None or not isinstance(quantize.outputs[0], TensorType) or not quantize.outputs[0].is_static:
        return False
    members, add = [quantize], graph.node(graph.input_values(quantize)[0].node)
    relu = add.domain == "" and add.op_type == "Relu"
    if relu:
        members.append(add)
        add = graph.node(graph.input_values(add)[0].node)
    if add.domain != "" or add.op_type not in ("Add", "Sum") or add.num_inputs != 2 \
            or any(_only_reader(graph, member) is None for member in [add, *members[1:]]):
        return False
    members.append(add)
    sources = [per_tensor(graph, graph.node(value.node), "DequantizeLinear") for value in graph.input_values(add)]
    if None in sources:
        return False
    shape = quantize.outputs[0].shape
    if graph.type_of(sources[0][0]).shape != shape:
        sources.reverse()  # the full-size operand first (float addition commutes)
    if graph.type_of(sources[0][0]).shape != shape or not _repeats(graph.type_of(sources[1][0]).shape, shape):
        return False
    (a_scale, a_zero), (b_scale, b_zero), (y_scale, y_zero) = (_parameters(f) for f in (*sources, output))
    dtype = quantize.outputs[0].dtype
    low, high = LIMITS[dtype]
    attrs = {"a_scale": a_scale, "a_zero_point": a_zero, "b_scale": b_scale, "b_zero_point": b_zero,
             "y_scale": y_scale, "y_zero_point": y_zero, "low": max(low, y_zero) if relu else low, "high": high,
             "output_dtype": dtype, "fused_nodes": [member.name for member in reversed(members)]}
    dequantizers = dict.fromkeys(value.node for value in graph.input_values(add))
    graph.replace_node(quantize, "QuantizedAdd", [sources[0][0], sources[1][0]], attrs, domain=KILN_DOMAIN)
    for member in members[1:]:
        graph.remove_node(member.name)
    for name in dequantizers:
        remove_if_unused(graph, name)
    log.info("fuse-quantized-add: %s -> kiln::QuantizedAdd", ", ".join(attrs["fused_nodes"]))
    return True


@register_pass("fuse-quantized-add")
def fuse_quantized_add(graph: Graph, ctx: PassContext | None = None) -> Graph:
    for node in graph.topological_order():
        if node.name in graph and node.domain == "" and node.op_type == "QuantizeLinear":
            _fuse(graph, node)
    return graph
