"""An IR graph back as ONNX.

Ops whose reference semantics come from the onnx package and that take a graph attribute
(FlexAttention's score_mod, ...) need that graph as ONNX again (`graph_to_proto`). Constants
become initializers; a subgraph's captured inputs become references to the outer names they
capture, as ONNX writes them. `model_to_proto` writes an optimized graph as a whole model that
Netron opens: fused ops stay in Kiln's own domain, their structured attributes (an epilogue's
steps) as JSON strings.
"""

from __future__ import annotations

import json

import onnx
from onnx import helper

from compiler.ir.graph import KILN_DOMAIN, Graph, Value


def _names(graph: Graph) -> dict[Value, str]:
    names = {}
    for node in graph.nodes():
        for index, name in enumerate(node.output_names):
            names[Value(node.name, index)] = name
        if node.is_input and "captured_from" in node.attrs:
            names[Value(node.name, 0)] = node.attrs["captured_from"]
    return names


def _attribute(node, key: str, value) -> onnx.AttributeProto:
    from compiler.ops.onnx_bridge import attribute_to_proto

    if node.domain == KILN_DOMAIN and isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
        return helper.make_attribute(key, json.dumps(value))
    return attribute_to_proto(key, value)


def model_to_proto(graph: Graph) -> onnx.ModelProto:
    """`graph` as an ONNX model, each domain imported at the highest version its nodes use (Kiln's own: 1)."""
    versions: dict[str, int] = {}
    for node in graph.nodes():
        if not (node.is_input or node.is_constant):
            version = 1 if node.domain == KILN_DOMAIN else node.version or 1
            versions[node.domain] = max(versions.get(node.domain, 1), version)
    opsets = [helper.make_opsetid(domain, version) for domain, version in sorted(versions.items())]
    return helper.make_model(graph_to_proto(graph), opset_imports=opsets, producer_name="kiln")


def graph_to_proto(graph: Graph) -> onnx.GraphProto:
    from compiler.ops.control_flow import captured_count
    from compiler.ops.onnx_bridge import array_to_tensor, type_to_proto

    names = _names(graph)
    inputs, initializers, nodes = [], [], []
    for name in graph.inputs:
        node = graph.node(name)
        if "captured_from" not in node.attrs:
            value_type = node.outputs[0]
            inputs.append(helper.make_value_info(names[Value(name, 0)], type_to_proto(value_type) if value_type
                                                 else onnx.TypeProto()))
    for node in graph.topological_order():
        if node.is_constant:
            initializers.append(array_to_tensor(node.attrs["value"], names[Value(node.name, 0)]))
        elif not node.is_input:
            operands = ["" if value is None else names[value] for value in graph.input_values(node)]
            subgraphs = list(graph.subgraphs(node).values())
            if subgraphs:  # Kiln feeds captured outer values as trailing inputs; ONNX names them inside
                operands = operands[:len(operands) - captured_count(subgraphs[0])]
            proto = helper.make_node(node.op_type, operands, list(node.output_names), name=node.name,
                                     domain=node.domain)
            proto.attribute.extend(_attribute(node, key, value) for key, value in sorted(node.attrs.items()))
            nodes.append(proto)
    outputs = []
    for name, value in graph.outputs:
        if names[value] != name:
            nodes.append(helper.make_node("Identity", [names[value]], [name], name=f"{name}.output"))
        value_type = graph.type_of(value)
        outputs.append(helper.make_value_info(name, type_to_proto(value_type) if value_type else onnx.TypeProto()))
    return helper.make_graph(nodes, graph.name, inputs, outputs, initializer=initializers)
