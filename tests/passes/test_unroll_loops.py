"""unroll-loops: Scan and constant-count Loop become straight-line code on targets without control flow."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.passes.manager import PassContext
from compiler.passes.unroll_loops import UnrollLoops
from frontends.onnx.importer import import_model


def scan_model(reverse: int = 0):
    """Running sum over the rows of x (3x2): final sum and every partial sum."""
    body = helper.make_graph(
        [helper.make_node("Add", ["sum_in", "row"], ["sum_out"]), helper.make_node("Identity", ["sum_out"], ["partial"])],
        "body", [helper.make_tensor_value_info("sum_in", TensorProto.FLOAT, [2]),
                 helper.make_tensor_value_info("row", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("sum_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("partial", TensorProto.FLOAT, [2])])
    node = helper.make_node("Scan", ["initial", "x"], ["total", "partials"], body=body, num_scan_inputs=1,
                            scan_input_directions=[reverse], scan_output_axes=[-1])
    graph = helper.make_graph([node], "scan", [helper.make_tensor_value_info("initial", TensorProto.FLOAT, [2]),
                                               helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
                              [helper.make_tensor_value_info("total", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("partials", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])


def loop_model(condition_output: str = "cond_in"):
    """Four iterations doubling a state and collecting iteration numbers; the body's condition is
    `condition_output` (the condition input passed through, or a computed value)."""
    body_nodes = [helper.make_node("Add", ["state_in", "state_in"], ["state_out"]),
                  helper.make_node("Identity", ["i"], ["i_out"]),
                  helper.make_node("Identity", [condition_output], ["cond_out"])]
    if condition_output != "cond_in":
        body_nodes.insert(0, helper.make_node("Less", ["i", "four"], [condition_output]))
    body = helper.make_graph(
        body_nodes, "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                             helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("i_out", TensorProto.INT64, [])])
    initializers = [helper.make_tensor("trip", TensorProto.INT64, [], [4]),
                    helper.make_tensor("go", TensorProto.BOOL, [], [True]),
                    helper.make_tensor("four", TensorProto.INT64, [], [4])]
    node = helper.make_node("Loop", ["trip", "go", "x"], ["final", "iterations"], body=body)
    graph = helper.make_graph([node], "loop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("final", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("iterations", TensorProto.INT64, [4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])


def op_types(graph):
    return {node.op_type for node in graph.nodes()}


def test_cpu_unrolls_a_scan_and_ref_keeps_it():
    assert "Scan" not in op_types(UnrollLoops()(import_model(scan_model()), PassContext(target="cpu")))
    assert "Scan" in op_types(UnrollLoops()(import_model(scan_model()), PassContext(target="ref")))


def test_an_unrolled_scan_computes_what_the_scan_does():
    feeds = {"initial": np.array([1, -1], np.float32), "x": np.arange(6, dtype=np.float32).reshape(3, 2)}
    for reverse in (0, 1):
        expected = runtime.load(compiler.compile(scan_model(reverse), "ref")).infer(feeds)
        actual = runtime.load(compiler.compile(scan_model(reverse), "cpu")).infer(feeds)
        for name in expected:
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=f"{name}, reverse={reverse}")


def test_a_loop_with_a_constant_count_unrolls_and_computes_the_same():
    assert "Loop" not in op_types(UnrollLoops()(import_model(loop_model()), PassContext(target="cpu")))
    result = runtime.load(compiler.compile(loop_model(), "cpu")).infer({"x": np.array([1, 3], np.float32)})
    np.testing.assert_array_equal(result["final"], [16, 48])
    np.testing.assert_array_equal(result["iterations"], [0, 1, 2, 3])


def test_a_loop_whose_body_may_stop_it_stays_a_loop():
    graph = UnrollLoops()(import_model(loop_model(condition_output="below_four")), PassContext(target="cpu"))
    assert "Loop" in op_types(graph)


def test_a_scan_longer_than_the_limit_stays_a_scan():
    assert "Scan" in op_types(UnrollLoops(max_iterations=2)(import_model(scan_model()), PassContext(target="cpu")))
