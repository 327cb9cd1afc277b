"""State variables on the gpu target: a running sum s_out = s_in + x carried across inferences."""

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
