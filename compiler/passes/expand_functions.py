"""Replace ops the target cannot compile by their ONNX function bodies (decomposition).

Many ONNX ops (Attention, LayerNormalization, the losses, RMSNormalization, ...) are defined
by the standard as a function of simpler ops. When the target reports a problem with such a
node, this pass inlines the body, imported through the ONNX frontend like any model (so it is
normalised and typed the same way), in place of the node. Bodies may hold further function
ops; the pass repeats until nothing changes, folding constants between rounds so that a body
op fed by constants (a Range over a frozen size) folds instead of expanding further.
"""

from __future__ import annotations

import onnx
from onnx import helper

from compiler.ir.graph import Graph, Node, Value
from compiler.ops.onnx_bridge import attribute_to_proto, schema_for, type_to_proto
from compiler.ops.onnx_semantics import node_to_proto
from compiler.passes.fold_constants import FoldConstants
from compiler.passes.common import inline
from compiler.passes.manager import PassContext, register_pass

_MAX_ROUNDS = 8


def function_body(node: Node, input_types: list) -> onnx.FunctionProto | None:
    """The ONNX function defining `node` at its opset, or None when the op has none."""
    schema = schema_for(node.op_type, node.domain, node.version)
    if schema is None or node.version is None:
        return None
    data = None
    if schema.has_function:
        data = schema.get_function_with_opset_version(node.version)
    elif schema.has_context_dependent_function:
        proto = node_to_proto(node, [t is not None for t in input_types])
        types = [type_to_proto(t).SerializeToString() for t in input_types if t is not None]
        data = schema.get_context_dependent_function_with_opset_version(node.version, proto.SerializeToString(), types)
    if isinstance(data, onnx.FunctionProto):
        return data
    return onnx.FunctionProto.FromString(data) if data else None


def _resolved_attributes(body_node: onnx.NodeProto, node: Node, schema) -> list[onnx.AttributeProto]:
    """The body node's attributes with references to the calling node's attributes filled in."""
    resolved = []
    for attr in body_node.attribute:
        if not attr.ref_attr_name:
            resolved.append(attr)
            continue
        spec = schema.attributes.get(attr.ref_attr_name)
        if attr.ref_attr_name in node.attrs:
            resolved.append(attribute_to_proto(attr.name, node.attrs[attr.ref_attr_name], spec.type if spec else None))
        elif spec is not None and spec.default_value.type:
            default = onnx.AttributeProto.FromString(spec.default_value.SerializeToString())
            default.name = attr.name
            resolved.append(default)
    return resolved


def body_as_model(node: Node, input_types: list, body: onnx.FunctionProto) -> onnx.ModelProto:
    """The function body as a standalone model whose inputs are the node's present inputs."""
    schema = schema_for(node.op_type, node.domain, node.version)
    absent = {name for name, t in zip(body.input, input_types) if t is None} | set(body.input[len(input_types):])
    nodes = []
    for body_node in body.node:
        copy = helper.make_node(body_node.op_type, ["" if n in absent else n for n in body_node.input],
                                list(body_node.output), domain=body_node.domain)
        copy.attribute.extend(_resolved_attributes(body_node, node, schema))
        nodes.append(copy)
    inputs = [helper.make_value_info(name, type_to_proto(t)) for name, t in zip(body.input, input_types) if t is not None]
    outputs = [helper.make_value_info(name, onnx.TypeProto()) for name in body.output[: len(node.outputs)]]
    graph = helper.make_graph(nodes, f"{node.op_type}_body", inputs, outputs)
    opsets = list(body.opset_import) or [helper.make_opsetid(node.domain, node.version)]
    return helper.make_model(graph, opset_imports=opsets)


def _expand(graph: Graph, node: Node) -> bool:
    """Inline the body of `node` in its place; False (graph untouched) when that is not possible."""
    from frontends.onnx.importer import ModelImportError, import_model

    input_types = graph.input_types(node)
    body = function_body(node, input_types)
    if body is None or len(body.output) < len(node.outputs):
        return False
    try:
        body_graph = import_model(body_as_model(node, input_types, body))
    except (ModelImportError, ValueError):
        return False
    present = [v for v in graph.input_values(node) if v is not None]
    for index, result in enumerate(inline(graph, body_graph, present, f"{node.name}/")):
        graph.replace_all_uses(Value(node.name, index), result)
    graph.remove_node(node.name)
    return True


@register_pass("expand-functions")
def expand_functions(graph: Graph, ctx: PassContext | None = None) -> Graph:
    from compiler.targets.base import get_target

    target = get_target(ctx.target if ctx else "ref")
    for _ in range(_MAX_ROUNDS):
        changed = False
        for node in graph.topological_order():
            if node.is_input or node.is_constant or graph.subgraphs(node):
                continue
            if target.node_problem(graph, node) and _expand(graph, node):
                changed = True
        if not changed:
            break
        FoldConstants()(graph, ctx)
    return graph
