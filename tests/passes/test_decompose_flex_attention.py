"""decompose-flex-attention: FlexAttention becomes MatMul/Softmax where the target has no kernel for it."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.passes.decompose_flex_attention import decompose_flex_attention
from compiler.passes.manager import PassContext
from frontends.onnx.importer import import_model


def flex_model():
    """Grouped-query FlexAttention: 4 query heads over 2 key/value heads."""
    node = helper.make_node("FlexAttention", ["q", "k", "v"], ["y"], domain="ai.onnx.preview", scale=0.5)
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, heads, 3, 8])
              for name, heads in (("q", 4), ("k", 2), ("v", 2))]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 8])
    graph = helper.make_graph([node], "flex", inputs, [output])
    opsets = [helper.make_opsetid("", 23), helper.make_opsetid("ai.onnx.preview", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def op_types(target: str) -> set[str]:
    graph = decompose_flex_attention(import_model(flex_model()), PassContext(target=target))
    return {node.op_type for node in graph.nodes()}


def test_cpu_decomposes_and_ref_keeps_flex_attention():
    assert "FlexAttention" not in op_types("cpu") and {"MatMul", "Softmax"} <= op_types("cpu")
    assert "FlexAttention" in op_types("ref")


def test_the_decomposition_matches_the_reference():
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((1, heads, 3, 8)).astype(np.float32)
             for name, heads in (("q", 4), ("k", 2), ("v", 2))}
    expected = runtime.load(compiler.compile(flex_model(), "ref")).infer(feeds)["y"]
    actual = runtime.load(compiler.compile(flex_model(), "cpu")).infer(feeds)["y"]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
