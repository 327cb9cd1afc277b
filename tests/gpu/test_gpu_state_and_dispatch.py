"""State variables and shape-dispatched parts on the gpu target (running sum; an MLP at two batch sizes)."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import compiler
import runtime

pytest.importorskip("pyopencl")


def running_sum_model():
    graph = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x"], ["s_out"]), helper.make_node("Relu", ["s_out"], ["y"])], "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8]),
         helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8]),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [3, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_gpu_requests_carry_their_own_running_sum():
    model = runtime.load(compiler.compile(running_sum_model(), target="gpu", state={"s_in": "s_out"}))
    assert [i.name for i in model.inputs] == ["x"] and [o.name for o in model.outputs] == ["y"]
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((2, 5, 3, 8)).astype(np.float32)
    requests = [model.create_infer_request() for _ in range(2)]
    for t in range(5):
        for k in (0, 1):
            got = requests[k].infer({"x": frames[k, t]})["y"]
            np.testing.assert_allclose(got, np.maximum(frames[k, :t + 1].sum(axis=0), 0), rtol=1e-5, atol=1e-6)
    requests[0].reset_state()
    np.testing.assert_allclose(requests[0].infer({"x": frames[0, 0]})["y"], np.maximum(frames[0, 0], 0))


def test_gpu_parts_dispatched_by_input_shape():
    from tests.models.builders import mlp_model

    model = runtime.load(compiler.compile(mlp_model(), target="gpu", specialize=[{"x": [2, 4]}, {"x": [5, 4]}]))
    reference = runtime.load(compiler.compile(mlp_model(), target="ref"))
    assert model.inputs[0].bounds == ((2, 5), None)
    for batch in (2, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
        np.testing.assert_allclose(model.infer({"x": x})["y"], reference.infer({"x": x})["y"], rtol=1e-5, atol=1e-6)
