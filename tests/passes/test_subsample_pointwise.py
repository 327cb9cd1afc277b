"""subsample-pointwise: a strided 1x1 Conv reads its pixels through a strided Slice and runs at stride 1;
padded or larger kernels stay; the cpu result matches onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from compiler.driver import optimize
from compiler.ir.graph import Graph, Value
from tests.passes.conftest import assert_same_results, f32, run_verified

RNG = np.random.default_rng(0)


def _conv(kernel: int = 1, strides=(2, 3), pads=(0, 0, 0, 0)) -> Graph:
    graph = Graph()
    x = graph.add_input("x", f32(1, 4, 9, 10))
    w = graph.add_constant(RNG.standard_normal((6, 4, kernel, kernel)).astype(np.float32), "w")
    conv = graph.add_node("Conv", [x, w], {"strides": list(strides), "pads": list(pads)}, version=11, name="conv")
    graph.add_output("y", Value(conv.name))
    return graph


def test_a_strided_pointwise_conv_reads_a_strided_slice():
    before = _conv()
    after = run_verified("subsample-pointwise", before.copy())
    conv = after.node("conv")
    subsample = after.node(after.input_values(conv)[0].node)
    assert subsample.op_type == "Slice" and conv.attrs["strides"] == [1, 1]
    assert after.type_of(Value(subsample.name)).shape == (1, 4, 5, 4)
    assert_same_results(before, after, {"x": RNG.standard_normal((1, 4, 9, 10)).astype(np.float32)})


@pytest.mark.parametrize("kernel, strides, pads", [(3, (2, 2), (0, 0, 0, 0)), (1, (1, 1), (0, 0, 0, 0)),
                                                    (1, (2, 2), (1, 1, 1, 1))])
def test_other_convs_stay(kernel, strides, pads):
    after = run_verified("subsample-pointwise", _conv(kernel, strides, pads))
    assert [node.op_type for node in after.nodes() if not (node.is_input or node.is_constant)] == ["Conv"]


def test_resnet_style_projection_matches_onnxruntime():
    """A stride-2 1x1 projection with its BatchNormalization and residual Add, compiled for the cpu."""
    f = lambda *shape: (RNG.standard_normal(shape) * 0.2).astype(np.float32)  # noqa: E731
    initializers = {"w": f(16, 8, 1, 1), "w3": f(16, 8, 3, 3), "gamma": f(16) + 1, "beta": f(16), "mean": f(16),
                    "var": np.abs(f(16)) + 0.5}
    nodes = [helper.make_node("Conv", ["x", "w"], ["p"], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["p", "gamma", "beta", "mean", "var"], ["pn"]),
             helper.make_node("Conv", ["x", "w3"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["pn", "c"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 15, 15])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert "Slice" in [node.op_type for node in optimize(model, "cpu").nodes()]
    x = RNG.standard_normal((2, 8, 15, 15)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = runtime.load(compiler.compile(model, target="cpu")).infer({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
