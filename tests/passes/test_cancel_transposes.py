"""cancel-transposes: consecutive Transposes compose, identity ones go, and a Transpose sinks
through elementwise ops (permuting their constants) to meet and cancel the next one."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.driver import optimize
from compiler.ir.graph import Graph, Value
from tests.codegen.kernel_harness import assert_cpu_matches_ref
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_pass, run_verified

NCHW_TO_NHWC, NHWC_TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
X = np.random.default_rng(0).standard_normal((1, 2, 3, 4)).astype(np.float32)


def _transpose(graph: Graph, value: Value, perm: list[int] | None, name: str) -> Value:
    attrs = {} if perm is None else {"perm": perm}
    return Value(graph.add_node("Transpose", [value], attrs, version=21, name=name).name)


def test_consecutive_transposes_compose_into_one():
    before = Graph()
    x = before.add_input("x", f32(1, 2, 3, 4))
    first = _transpose(before, x, [0, 2, 3, 1], "first")
    before.add_output("y", _transpose(before, first, [2, 0, 1, 3], "second"))

    expected = Graph()
    x = expected.add_input("x", f32(1, 2, 3, 4))
    expected.add_output("y", _transpose(expected, x, [3, 0, 2, 1], "second"))

    after = run_verified("cancel-transposes", before.copy())
    assert_same_graph(after, expected)
    assert_same_results(before, after, {"x": X})


def _round_trip(between: str, perm_in=NCHW_TO_NHWC, perm_out=NHWC_TO_NCHW) -> Graph:
    """x -> Transpose -> `between` ops -> Transpose -> Relu -> y."""
    graph = Graph()
    value = _transpose(graph, graph.add_input("x", f32(1, 2, 3, 4)), perm_in, "to_nhwc")
    if between == "relu_mul_sub":  # the NHWC tensor is [1, 3, 4, 2]: c varies along its last axis
        value = Value(graph.add_node("Relu", [value], version=14, name="inner_relu").name)
        value = Value(graph.add_node("Mul", [value, graph.add_constant(np.float32([2, -3]), "c")], version=14,
                                     name="mul").name)
        value = Value(graph.add_node("Sub", [graph.add_constant(np.float32(1), "one"), value], version=14,
                                     name="sub").name)
    value = _transpose(graph, value, perm_out, "to_nchw")
    graph.add_output("y", Value(graph.add_node("Relu", [value], version=14, name="relu").name))
    return graph


def test_an_inverse_pair_cancels():
    expected = Graph()
    expected.add_output("y", Value(expected.add_node("Relu", [expected.add_input("x", f32(1, 2, 3, 4))], version=14,
                                                     name="relu").name))
    after = run_verified("cancel-transposes", _round_trip(""))
    assert_same_graph(after, expected)
    assert_same_results(_round_trip(""), after, {"x": X})


def test_a_transpose_sinks_through_elementwise_ops_and_their_constants_to_cancel():
    expected = Graph()
    x = expected.add_input("x", f32(1, 2, 3, 4))
    value = Value(expected.add_node("Relu", [x], version=14, name="inner_relu").name)
    permuted = expected.add_constant(np.float32([2, -3]).reshape(1, 2, 1, 1), "c.transposed")
    value = Value(expected.add_node("Mul", [value, permuted], version=14, name="mul").name)
    value = Value(expected.add_node("Sub", [expected.add_constant(np.float32(1), "one"), value], version=14,
                                    name="sub").name)
    expected.add_constant(np.float32([2, -3]), "c")  # no longer read: dead-code elimination removes it later
    expected.add_output("y", Value(expected.add_node("Relu", [value], version=14, name="relu").name))

    after = run_verified("cancel-transposes", _round_trip("relu_mul_sub"))
    assert_same_graph(after, expected)
    assert_same_results(_round_trip("relu_mul_sub"), after, {"x": X})


def test_a_sunk_transpose_that_does_not_cancel_merges_with_the_next():
    before = _round_trip("relu_mul_sub", perm_out=[0, 3, 2, 1])
    after = run_verified("cancel-transposes", before.copy())
    transposes = [n for n in after.nodes() if n.op_type == "Transpose"]
    assert [n.attrs["perm"] for n in transposes] == [[0, 1, 3, 2]]
    assert_same_results(before, after, {"x": X})


def _blocked(kind: str) -> Graph:
    """A Transpose that must stay where it is."""
    graph = Graph()
    x = graph.add_input("x", f32(1, 2, 3, 4))
    value = _transpose(graph, x, NCHW_TO_NHWC, "to_nhwc")
    if kind == "no_second_transpose":
        graph.add_output("y", Value(graph.add_node("Relu", [value], version=14).name))
        return graph
    if kind == "two_readers":
        graph.add_output("t", value)
        value = Value(graph.add_node("Relu", [value], version=14).name)
    elif kind == "operand_computed_at_run_time":
        other = graph.add_input("other", f32(1, 3, 4, 2))
        value = Value(graph.add_node("Add", [value, other], version=14).name)
    elif kind == "not_elementwise":
        value = Value(graph.add_node("Softmax", [value], {"axis": -1}, version=13).name)
    graph.add_output("y", _transpose(graph, value, NHWC_TO_NCHW, "to_nchw"))
    return graph


@pytest.mark.parametrize("kind", ["no_second_transpose", "two_readers", "operand_computed_at_run_time",
                                  "not_elementwise"])
def test_transposes_that_cannot_meet_stay(kind):
    assert_same_graph(run_pass("cancel-transposes", _blocked(kind)), _blocked(kind))


def test_an_identity_transpose_is_dropped_unless_a_graph_output_would_alias_an_input():
    before = Graph()
    x = before.add_input("x", f32(2, 3))
    same = _transpose(before, x, [0, 1], "same")
    before.add_output("y", Value(before.add_node("Relu", [same], version=14, name="relu").name))
    before.add_output("z", _transpose(before, x, None, "t1"))  # no perm: reversed axes
    back = _transpose(before, Value("t1"), None, "t2")
    before.add_output("w", back)

    expected = Graph()
    x = expected.add_input("x", f32(2, 3))
    expected.add_output("y", Value(expected.add_node("Relu", [x], version=14, name="relu").name))
    expected.add_output("z", _transpose(expected, x, None, "t1"))
    expected.add_output("w", _transpose(expected, x, [0, 1], "t2"))  # dropping it would make w alias x

    assert_same_graph(run_verified("cancel-transposes", before), expected)


def _nhwc_model():
    """x (NCHW) -> Transpose(NHWC) -> Relu -> Mul(c[C]) -> Add(d[H,W,C]) -> Transpose(NCHW) -> Abs."""
    rng = np.random.default_rng(1)
    constants = {"c": rng.standard_normal(4).astype(np.float32),
                 "d": rng.standard_normal((5, 6, 4)).astype(np.float32)}
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=NCHW_TO_NHWC),
             helper.make_node("Relu", ["t"], ["r"]),
             helper.make_node("Mul", ["r", "c"], ["m"]),
             helper.make_node("Add", ["d", "m"], ["a"]),
             helper.make_node("Transpose", ["a"], ["back"], perm=NHWC_TO_NCHW),
             helper.make_node("Abs", ["back"], ["y"])]
    graph = helper.make_graph(nodes, "nhwc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 5, 6])],
                              [numpy_helper.from_array(v, k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cpu_results_stay_bit_identical_to_ref_and_onnxruntime():
    model = _nhwc_model()
    assert "Transpose" not in {n.op_type for n in optimize(model, "cpu").nodes()}
    assert "Transpose" in {n.op_type for n in optimize(model, "cpu", disable=["cancel-transposes"]).nodes()}
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 4, 5, 6)).astype(np.float32)}
    actual = assert_cpu_matches_ref(model, feeds, exact=True)["y"]
    ort = pytest.importorskip("onnxruntime")
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(actual, expected)
