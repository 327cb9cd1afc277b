"""Property test: broadcasting binary ops on random shapes and values match ONNX Runtime."""

import numpy as np
import onnxruntime
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import compiler
import runtime

OPS = ["Add", "Sub", "Mul", "Max", "Min", "Pow"]


@st.composite
def broadcast_case(draw):
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 4)) for _ in range(rank)]
    other = [d if draw(st.booleans()) else 1 for d in shape][draw(st.integers(0, rank - 1)):]
    return draw(st.sampled_from(OPS)), shape, other, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=40, deadline=None)
@given(broadcast_case())
def test_binary_broadcast_matches_onnxruntime(case):
    op, shape_a, shape_b, seed = case
    node = helper.make_node(op, ["a", "b"], ["y"])
    graph = helper.make_graph([node], "binary", [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, shape_a),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, shape_b)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(seed)
    feeds = {"a": rng.uniform(0.5, 2, shape_a).astype(np.float32), "b": rng.uniform(-2, 2, shape_b).astype(np.float32)}
    ours = runtime.load(compiler.compile(model)).infer(feeds)["y"]
    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
