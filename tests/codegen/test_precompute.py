"""Values computed from constants alone that folding leaves to run time are computed once at load."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime


def fill_model():
    """w = ConstantOfShape([6, 4], 0.5); y = x @ w + Neg(w)[0]; z = Transpose(w) (an output)."""
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["w"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("Neg", ["w"], ["nw"]),
             helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Add", ["xw", "nw_row"], ["y"]),
             helper.make_node("Gather", ["nw", "zero"], ["nw_row"], axis=0),
             helper.make_node("Transpose", ["w"], ["z"])]
    graph = helper.make_graph(
        nodes, "fill", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 6])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [6, 4]),
                     helper.make_tensor("zero", TensorProto.INT64, [], [0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_constant_only_nodes_run_once_at_load():
    artifact = compiler.compile(fill_model(), "cpu", disable=["fold-constants"])
    plan = artifact.manifest["memory_plan"]
    assert plan["precomputed_bytes"] > 0 and len(plan["precomputed"]) >= 3  # the fill, Neg, Gather, Transpose
    launched = {name for kernel in artifact.manifest["kernels"] for name in kernel["nodes"]}
    assert not launched & set(plan["precomputed"])
    x = np.linspace(-1, 1, 18, dtype=np.float32).reshape(3, 6)
    with runtime.load(artifact) as model:
        for _ in range(2):
            result = model.infer({"x": x})
            np.testing.assert_allclose(result["y"], x @ np.full((6, 4), 0.5, np.float32) - 0.5, rtol=1e-6)
            np.testing.assert_array_equal(result["z"], np.full((4, 6), 0.5, np.float32))


def test_without_such_nodes_the_weights_buffer_is_the_blob():
    artifact = compiler.compile(fill_model(), "cpu")
    assert artifact.manifest["memory_plan"]["precomputed_bytes"] == 0
