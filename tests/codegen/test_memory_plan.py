"""Memory plan: liveness reuse, views sharing storage, outputs written in place."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.codegen.memory_plan import plan_memory
from compiler.driver import optimize


def model(nodes, outputs=("y",)):
    graph = helper.make_graph(nodes, "plan", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
                              initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [6, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_view_keeps_its_root_alive():
    """a = Transpose(x); v = Reshape(a); c = Neg(x); y = v + c: c must not reuse a's block."""
    nodes = [helper.make_node("Transpose", ["x"], ["a"]), helper.make_node("Reshape", ["a", "shape"], ["v"]),
             helper.make_node("Neg", ["x"], ["c"]), helper.make_node("Add", ["v", "c2"], ["y"]),
             helper.make_node("Reshape", ["c", "shape"], ["c2"])]
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    y = runtime.load(compiler.compile(model(nodes), target="cpu")).infer({"x": x})["y"]
    np.testing.assert_array_equal(y, x.T - x.reshape(6, 4))


def test_dead_intermediates_share_the_workspace():
    chain = [helper.make_node("Relu", ["x"], ["t0"])] + \
        [helper.make_node("Neg", [f"t{i}"], [f"t{i + 1}"]) for i in range(6)] + [helper.make_node("Relu", ["t6"], ["y"])]
    plan = plan_memory(optimize(model(chain), "cpu"))
    assert plan.workspace_bytes == 2 * 128  # two 96-byte tensors alive at once, 64-byte aligned
