"""eliminate-identity: Identity and inference Dropout disappear; graph outputs stay distinct."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_pass, run_verified


def test_identity_chain_is_removed():
    before = Graph()
    x = before.add_input("x", f32(2, 3))
    first = before.add_node("Identity", [x], version=19)
    relu = before.add_node("Relu", [Value(first.name)], version=14)
    second = before.add_node("Identity", [Value(relu.name)], version=19)
    before.add_output("y", Value(second.name))

    expected = Graph()
    x = expected.add_input("x", f32(2, 3))
    expected.add_output("y", Value(expected.add_node("Relu", [x], version=14).name))

    assert_same_graph(run_pass("eliminate-identity", before), expected)


def test_identity_is_kept_when_an_output_would_alias_an_input_or_another_output():
    before = Graph()
    x = before.add_input("x", f32(4))
    before.add_output("copy", Value(before.add_node("Identity", [x], version=19, name="copy").name))
    neg = Value(before.add_node("Neg", [x], version=13).name)
    before.add_output("a", Value(before.add_node("Identity", [neg], version=19, name="a").name))
    before.add_output("b", Value(before.add_node("Identity", [neg], version=19, name="b").name))

    expected = Graph()
    x = expected.add_input("x", f32(4))
    expected.add_output("copy", Value(expected.add_node("Identity", [x], version=19, name="copy").name))
    neg = Value(expected.add_node("Neg", [x], version=13).name)
    expected.add_output("a", neg)
    expected.add_output("b", Value(expected.add_node("Identity", [neg], version=19, name="b").name))

    after = run_pass("eliminate-identity", before)
    assert_same_graph(after, expected)
    assert len({value for _, value in after.outputs}) == 3


def _dropout_graph(training_mode) -> Graph:
    """y = Relu(Dropout(x, ratio, training_mode)); training_mode is None, a bool constant or "input"."""
    graph = Graph()
    x = graph.add_input("x", f32(2, 3))
    if training_mode == "input":
        flag = graph.add_input("training", TensorType("bool", ()))
    elif training_mode is not None:
        flag = graph.add_constant(np.array(training_mode), "training")
    else:
        flag = None
    ratio = graph.add_constant(np.array(0.5, np.float32), "ratio")
    dropout = graph.add_node("Dropout", [x, ratio, flag], version=13)
    graph.add_output("y", Value(graph.add_node("Relu", [Value(dropout.name)], version=14).name))
    return graph


def test_inference_dropout_is_removed():
    for training_mode in (None, False):
        expected = _dropout_graph(training_mode)
        relu = expected.node("relu")
        expected.set_input(relu, 0, Value("x"))
        expected.remove_node("dropout")

        assert_same_graph(run_pass("eliminate-identity", _dropout_graph(training_mode)), expected)


def test_dropout_that_may_train_is_kept():
    for training_mode in (True, "input"):
        expected = _dropout_graph(training_mode)
        assert_same_graph(run_pass("eliminate-identity", _dropout_graph(training_mode)), expected)


def _dropout_with_mask(shape) -> Graph:
    graph = Graph()
    x = graph.add_input("x", f32(*shape))
    dropout = graph.add_node("Dropout", [x], version=13, num_outputs=2, output_names=["out", "mask"])
    graph.add_output("y", Value(graph.add_node("Relu", [Value(dropout.name, 0)], version=14).name))
    graph.add_output("m", Value(dropout.name, 1))
    return graph


def test_used_mask_becomes_constant_ones_when_the_shape_is_static():
    before = _dropout_with_mask((2, 3))
    original = before.copy()

    expected = Graph()
    x = expected.add_input("x", f32(2, 3))
    expected.add_output("y", Value(expected.add_node("Relu", [x], version=14).name))
    expected.add_output("m", expected.add_constant(np.ones((2, 3), np.bool_), "mask"))

    after = run_verified("eliminate-identity", before)
    assert_same_graph(after, expected)
    assert_same_results(original, after, {"x": np.arange(6, dtype=np.float32).reshape(2, 3) - 3})


def test_used_mask_keeps_the_dropout_when_the_shape_is_symbolic():
    after = run_pass("eliminate-identity", _dropout_with_mask(("n", 3)))
    assert_same_graph(after, _dropout_with_mask(("n", 3)))


def _if_graph(with_identity: bool) -> Graph:
    """An If whose then-branch ends in Identity(Neg(c)) or in Neg(c)."""
    branches = {}
    for key, value in (("then_branch", 1.0), ("else_branch", 2.0)):
        branch = Graph(key)
        result = Value(branch.add_node("Neg", [branch.add_constant(np.array([value], np.float32), "c")],
                                       version=13).name)
        if with_identity and key == "then_branch":
            result = Value(branch.add_node("Identity", [result], version=19).name)
        branch.add_output("out", result)
        branches[key] = branch
    graph = Graph()
    condition = graph.add_input("condition", TensorType("bool", ()))
    graph.add_output("y", Value(graph.add_node("If", [condition], branches, version=21).name))
    return graph


def test_identity_inside_a_subgraph_is_removed():
    after = run_verified("eliminate-identity", _if_graph(with_identity=True))
    assert_same_graph(after, _if_graph(with_identity=False))
    assert_same_results(_if_graph(with_identity=True), after, {"condition": np.array(True)})
