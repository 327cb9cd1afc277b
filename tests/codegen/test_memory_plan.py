"""Memory plan: liveness reuse, views sharing storage, outputs written in place."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.codegen.llvm.kernels.registry import in_place_input
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


def chain_nodes():
    return [helper.make_node("Relu", ["x"], ["t0"])] + \
        [helper.make_node("Neg", [f"t{i}"], [f"t{i + 1}"]) for i in range(6)] + [helper.make_node("Relu", ["t6"], ["y"])]


def test_dead_intermediates_share_the_workspace():
    plan = plan_memory(optimize(model(chain_nodes()), "cpu", disable=["fuse-elementwise"]))
    assert plan.workspace_bytes == 2 * 128  # two 96-byte tensors alive at once, 64-byte aligned


def test_elementwise_kernels_write_over_dead_inputs():
    graph = optimize(model(chain_nodes()), "cpu", disable=["fuse-elementwise"])
    plan = plan_memory(graph, in_place_input)
    assert plan.workspace_bytes == 128 and len(plan.in_place) == 6  # every Neg reuses its input's block
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    y = runtime.load(compiler.compile(model(chain_nodes()), "cpu", disable=["fuse-elementwise"])).infer({"x": x})["y"]
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_an_input_read_later_is_not_overwritten():
    """t1 = Neg(t0) must not take t0's block: Add reads t0 afterwards."""
    nodes = [helper.make_node("Relu", ["x"], ["t0"]), helper.make_node("Neg", ["t0"], ["t1"]),
             helper.make_node("Add", ["t0", "t1"], ["y"])]
    plan = plan_memory(optimize(model(nodes), "cpu", disable=["fuse-elementwise"]), in_place_input)
    assert "Neg_1" not in plan.in_place and not any(name.startswith("Neg") for name in plan.in_place)
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    y = runtime.load(compiler.compile(model(nodes), "cpu", disable=["fuse-elementwise"])).infer({"x": x})["y"]
    np.testing.assert_array_equal(y, np.zeros_like(x))
