"""Memory plan: liveness reuse, views sharing storage, outputs written in place, Concat parts written into
their places."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.codegen.llvm.kernels.registry import in_place_input
from compiler.codegen.memory_plan import plan_memory
from compiler.driver import optimize
from compiler.ir.graph import Value


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


def concat_model(nodes, width: int):
    graph = helper.make_graph(nodes, "concat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def concat_steps(nodes, width: int):
    graph = optimize(concat_model(nodes, width), "cpu", disable=["fuse-elementwise"])
    plan = plan_memory(graph, in_place_input, concat_in_place=True)
    return graph, plan, [step.node.op_type for step in plan.steps if step.node is not None]


def test_concat_parts_are_written_in_place():
    """a and b are computed straight into c's block, 64 bytes apart; the Concat runs no kernel."""
    nodes = [helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1), helper.make_node("Exp", ["c"], ["y"])]
    graph, plan, steps = concat_steps(nodes, 16)
    assert "Concat" not in steps
    (concat,) = [n for n in graph.nodes() if n.op_type == "Concat"]
    block, (a, b) = plan.locations[Value(concat.name)], [plan.locations[v] for v in graph.input_values(concat)]
    assert a.region == b.region == "workspace" and (a.offset, b.offset) == (block.offset, block.offset + 64)
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)
    for threads in (1, 2):
        artifact = compiler.compile(concat_model(nodes, 16), "cpu", disable=["fuse-elementwise"])
        y = runtime.load(artifact, num_threads=threads).infer({"x": x})["y"]
        np.testing.assert_allclose(y, np.exp(np.concatenate([-x, np.maximum(x, 0)], axis=1)), rtol=1e-6)


def test_a_chain_of_concats_shares_one_block():
    """DenseNet's blocks: each layer's Concat is the prefix of the next one's, and read by the layer too.
    Every part lands in the last Concat's block; no Concat runs a kernel."""
    nodes = [helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b1"]),
             helper.make_node("Concat", ["a", "b1"], ["c1"], axis=1), helper.make_node("Sigmoid", ["c1"], ["s1"]),
             helper.make_node("ReduceMax", ["s1"], ["b2"], keepdims=1, axes=[0]),
             helper.make_node("Concat", ["c1", "b2"], ["c2"], axis=1), helper.make_node("Exp", ["c2"], ["y"])]
    graph, plan, steps = concat_steps(nodes, 16)
    assert "Concat" not in steps
    c1, c2 = (plan.locations[Value(n.name)] for n in graph.topological_order() if n.op_type == "Concat")
    assert c1.offset == c2.offset
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)
    first = np.concatenate([-x, np.maximum(x, 0)], axis=1)
    expected = np.exp(np.concatenate([first, 1 / (1 + np.exp(-first))], axis=1))
    for threads in (1, 2):
        artifact = compiler.compile(concat_model(nodes, 16), "cpu", disable=["fuse-elementwise"])
        y = runtime.load(artifact, num_threads=threads).infer({"x": x})["y"]
        np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_concat_copies_parts_it_cannot_place():
    """A part read elsewhere too, a graph input, or parts of unaligned sizes keep the Concat kernel."""
    read_twice = [helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"]),
                  helper.make_node("Concat", ["a", "b"], ["c"], axis=1), helper.make_node("Exp", ["c"], ["e"]),
                  helper.make_node("Concat", ["e", "a"], ["y"], axis=1)]
    with_input = [helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Concat", ["a", "x"], ["c"], axis=1),
                  helper.make_node("Exp", ["c"], ["y"])]
    unaligned = [helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"]),
                 helper.make_node("Concat", ["a", "b"], ["c"], axis=1), helper.make_node("Exp", ["c"], ["y"])]
    assert concat_steps(read_twice, 16)[2].count("Concat") == 2  # (the second one: its output is the graph's)
    assert concat_steps(with_input, 16)[2].count("Concat") == 1
    assert concat_steps(unaligned, 3)[2].count("Concat") == 1
