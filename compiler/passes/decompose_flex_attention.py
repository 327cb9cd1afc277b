"""FlexAttention (ai.onnx.preview) as MatMul/Softmax with its score_mod and prob_mod inlined.

ONNX gives FlexAttention no function body, so a target without a FlexAttention kernel gets
this decomposition, which follows the reference semantics: key/value heads repeated for
grouped queries, Q and K each scaled by sqrt(scale), scores and softmax computed in the
softmax precision (float32 for half inputs), the optional modifier graphs applied to the
scores and to the probabilities, and the result cast back to the value dtype.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType, numpy_dtype
from compiler.ops.control_flow import captured_count
from compiler.ops.onnx_bridge import dtype_from_onnx, dtype_to_onnx
from compiler.passes.common import inline
from compiler.passes.infer_types import infer_types
from compiler.passes.manager import PassContext, register_pass

_HALF = ("float16", "bfloat16")


class _Builder:
    """Adds the decomposition's nodes, named after the FlexAttention node."""

    def __init__(self, graph: Graph, node: Node):
        self.graph, self.prefix = graph, node.name

    def op(self, op_type: str, inputs, **attrs) -> Value:
        node = self.graph.add_node(op_type, inputs, attrs, version=13, name=f"{self.prefix}/{op_type.lower()}")
        return Value(node.name, 0)

    def constant(self, array) -> Value:
        return self.graph.add_constant(np.asarray(array), f"{self.prefix}/const")

    def cast(self, value: Value, source: str, target: str) -> Value:
        return value if source == target else self.op("Cast", [value], to=dtype_to_onnx(target))


def _repeat_heads(build: _Builder, value: Value, shape: tuple, repeat: int) -> Value:
    """np.repeat(value, repeat, axis=1) for a [B, H, S, E] tensor."""
    batch, heads, length, width = shape
    expanded = build.op("Expand", [build.op("Unsqueeze", [value, build.constant([2])]),
                                   build.constant([batch, heads, repeat, length, width])])
    return build.op("Reshape", [expanded, build.constant([batch, heads * repeat, length, width])])


def _decompose(graph: Graph, node: Node) -> bool:
    q, k, v = (graph.type_of(value) for value in graph.input_values(node)[:3])
    if not all(isinstance(t, TensorType) and t.is_static and len(t.shape) == 4 for t in (q, k, v)):
        return False
    query, key, value = graph.input_values(node)[:3]
    build = _Builder(graph, node)
    dtype = q.dtype
    if q.shape[1] != k.shape[1]:
        if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
            return False
        key = _repeat_heads(build, key, k.shape, q.shape[1] // k.shape[1])
        value = _repeat_heads(build, value, v.shape, q.shape[1] // k.shape[1])
    scale = node.attrs.get("scale", 1.0 / np.sqrt(q.shape[3]))
    root = build.constant(np.array(np.sqrt(np.float32(scale)), dtype=numpy_dtype(dtype)))
    keys = build.op("Transpose", [build.op("Mul", [key, root])], perm=[0, 1, 3, 2])
    scores = build.op("MatMul", [build.op("Mul", [query, root]), keys])
    precision = node.attrs.get("softmax_precision")
    compute = dtype_from_onnx(precision) if precision is not None else ("float32" if dtype in _HALF else dtype)
    scores = build.cast(scores, dtype, compute)
    captured = graph.input_values(node)[3:]
    if "score_mod" in node.attrs:
        body = node.attrs["score_mod"]
        scores = inline(graph, body, [scores, *captured[len(captured) - captured_count(body):]],
                        f"{node.name}/score/")[0]
    probabilities = build.op("Softmax", [scores], axis=-1)
    if "prob_mod" in node.attrs:
        body = node.attrs["prob_mod"]
        probabilities = inline(graph, body, [probabilities, *captured[len(captured) - captured_count(body):]],
                               f"{node.name}/prob/")[0]
    result = build.op("MatMul", [probabilities, build.cast(value, v.dtype, compute)])
    graph.replace_all_uses(Value(node.name, 0), build.cast(result, compute, v.dtype))
    graph.remove_node(node.name)
    return True


@register_pass("decompose-flex-attention")
def decompose_flex_attention(graph: Graph, ctx: PassContext | None = None) -> Graph:
    from compiler.targets.base import get_target

    target = get_target(ctx.target if ctx else "ref")
    changed = False
    for node in graph.topological_order():
        if node.domain == "ai.onnx.preview" and node.op_type == "FlexAttention" and target.node_problem(graph, node):
            changed = _decompose(graph, node) or changed
    return infer_types(graph, ctx) if changed else graph
