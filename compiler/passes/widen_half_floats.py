"""Compute float16/bfloat16 nodes in float32 where the target has no half-precision kernel.

CPUs without native half arithmetic compute half-precision ops in float32 anyway (numpy
and ONNX Runtime's CPU provider do the same), so a MatMul on float16 becomes
Cast(float32) -> MatMul -> Cast(float16). The rewrite is kept only when the target can
compile the float32 node, and the values between nodes stay half precision, as the model
asks.
"""

from __future__ import annotations

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.onnx_bridge import dtype_to_onnx
from compiler.passes.manager import PassContext, register_pass

HALF_FLOATS = frozenset({"float16", "bfloat16"})
# Ops whose attributes name dtypes or that only convert: widening them changes what they mean.
_KEEP = frozenset({"Cast", "CastLike", "BitCast", "EyeLike", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                   "Multinomial", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


def _is_half(value_type) -> bool:
    return isinstance(value_type, TensorType) and value_type.dtype in HALF_FLOATS


def _widened(value_type):
    return TensorType("float32", value_type.shape) if _is_half(value_type) else value_type


def _cast(graph: Graph, value: Value, value_type: TensorType, dtype: str, name: str) -> Value:
    node = graph.add_node("Cast", [value], {"to": dtype_to_onnx(dtype)}, version=21,
                          outputs=[TensorType(dtype, value_type.shape)], name=name)
    return Value(node.name, 0)


def _widen(graph: Graph, node: Node, target) -> bool:
    """Replace `node` by its float32 twin between casts; False (graph untouched) when the target
    cannot compile the twin either."""
    operands, types = graph.input_values(node), graph.input_types(node)
    casts = [_cast(graph, value, value_type, "float32", f"{node.name}.widen{index}")
             if _is_half(value_type) else value
             for index, (value, value_type) in enumerate(zip(operands, types))]
    twin = graph.add_node(node.op_type, casts, dict(node.attrs), domain=node.domain, version=node.version,
                          outputs=[_widened(t) for t in node.outputs], name=f"{node.name}.float32")
    if target.node_problem(graph, twin) is not None:
        graph.remove_node(twin.name)
        for value, original in zip(casts, operands):
            if value != original:
                graph.remove_node(value.node)
        return False
    for index, value_type in enumerate(node.outputs):
        result = Value(twin.name, index)
        if _is_half(value_type):
            result = _cast(graph, result, _widened(value_type), value_type.dtype, f"{node.name}.narrow{index}")
        graph.replace_all_uses(Value(node.name, index), result)
    graph.remove_node(node.name)
    return True


@register_pass("widen-half-floats")
def widen_half_floats(graph: Graph, ctx: PassContext | None = None) -> Graph:
    from compiler.targets.base import get_target

    target = get_target(ctx.target if ctx else "ref")
    for node in graph.topological_order():
        if node.is_input or node.is_constant or graph.subgraphs(node) or node.op_type in _KEEP:
            continue
        if not any(_is_half(t) for t in [*graph.input_types(node), *node.outputs]):
            continue
        if target.node_problem(graph, node) is not None:
            _widen(graph, node, target)
    return graph
