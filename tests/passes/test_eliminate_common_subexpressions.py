"""eliminate-common-subexpressions: equal computations and equal constants are kept once."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_pass, run_verified

PASS = "eliminate-common-subexpressions"


def test_equal_nodes_merge_transitively_and_the_first_is_kept():
    before = Graph()
    x = before.add_input("x", f32(3))
    c = before.add_constant(np.ones(3, np.float32), "c")
    c_again = before.add_constant(np.ones(3, np.float32), "c_again")
    first = before.add_node("Add", [Value(before.add_node("Relu", [x], version=14, name="r1").name), c], version=14)
    second = before.add_node("Add", [Value(before.add_node("Relu", [x], version=14, name="r2").name), c_again],
                             version=14)
    before.add_output("y", Value(before.add_node("Mul", [Value(first.name), Value(second.name)], version=14).name))
    original = before.copy()

    expected = Graph()
    x = expected.add_input("x", f32(3))
    c = expected.add_constant(np.ones(3, np.float32), "c")
    total = Value(expected.add_node("Add", [Value(expected.add_node("Relu", [x], version=14, name="r1").name), c],
                                    version=14).name)
    expected.add_output("y", Value(expected.add_node("Mul", [total, total], version=14).name))

    after = run_verified(PASS, before)
    assert_same_graph(after, expected)
    assert_same_results(original, after, {"x": np.array([-1, 0, 2], np.float32)})


def _constants(*arrays) -> Graph:
    """One Identity output per constant, so every constant is used."""
    graph = Graph()
    for i, array in enumerate(arrays):
        graph.add_output(f"y{i}", Value(graph.add_node("Identity", [graph.add_constant(array, f"c{i}")],
                                                       version=19, name=f"y{i}").name))
    return graph


def test_constants_merge_only_with_equal_dtype_shape_and_bytes():
    text = ["".join(("a", "b")), "".join(("a", "b"))]  # equal strings, distinct objects
    arrays = [np.array([1, 2], np.uint8), np.array([1, 2], np.uint8), np.array([1, 2], np.int8),
              np.array([[1, 2]], np.uint8), np.array([0.0, 2], np.float32), np.array([-0.0, 2], np.float32),
              np.array(text[:1], dtype=object), np.array(text[1:], dtype=object)]
    after = run_pass(PASS, _constants(*arrays))
    sources = [after.value_name(after.input_values(after.node(f"y{i}"))[0]) for i in range(len(arrays))]
    assert sources == ["c0", "c0", "c2", "c3", "c4", "c5", "c6", "c6"]
    assert "c1" not in after and "c7" not in after


def _pair(first: dict, second: dict, op="Transpose", version=21) -> Graph:
    """Two `op` nodes on x with the given attributes (and version for the second), summed."""
    graph = Graph()
    x = graph.add_input("x", f32(2, 2))
    a = graph.add_node(op, [x], first, version=21, name="a")
    b = graph.add_node(op, [x], second, version=version, name="b")
    graph.add_output("y", Value(graph.add_node("Add", [Value(a.name), Value(b.name)], version=14).name))
    return graph


def test_different_attributes_or_versions_do_not_merge():
    for before in (_pair({"perm": [0, 1]}, {"perm": [1, 0]}), _pair({"perm": [1, 0]}, {"perm": [1, 0]}, version=13),
                   _pair({}, {}, op="RandomNormalLike")):
        assert_same_graph(run_pass(PASS, before.copy()), before)


def test_array_attributes_compare_by_value():
    def graph(dtype_of_second) -> Graph:
        g = Graph()
        shape = g.add_constant(np.array([2], np.int64), "shape")
        a = g.add_node("ConstantOfShape", [shape], {"value": np.array([7], np.int32)}, version=21, name="a")
        b = g.add_node("ConstantOfShape", [shape], {"value": np.array([7], dtype_of_second)}, version=21, name="b")
        g.add_output("a", Value(a.name))
        g.add_output("b", Value(g.add_node("Identity", [Value(b.name)], version=19, name="copy").name))
        return g

    merged = run_pass(PASS, graph(np.int32))
    assert "b" not in merged and merged.input_values(merged.node("copy")) == [Value("a")]
    assert_same_graph(run_pass(PASS, graph(np.uint32)), graph(np.uint32))  # same bytes, other dtype


def test_two_graph_outputs_are_not_merged_into_one_value():
    def graph() -> Graph:
        g = Graph()
        x = g.add_input("x", f32(2))
        g.add_output("first", Value(g.add_node("Relu", [x], version=14, name="first").name))
        g.add_output("second", Value(g.add_node("Relu", [x], version=14, name="second").name))
        return g

    assert_same_graph(run_pass(PASS, graph()), graph())


def _if_pair(merged_inside: bool) -> Graph:
    """Two equal Ifs; each branch computes Neg(c) twice (once when `merged_inside`)."""
    graph = Graph()
    condition = graph.add_input("condition", TensorType("bool", ()))
    results = []
    for name in ("if_a", "if_b"):
        branches = {}
        for key in ("then_branch", "else_branch"):
            branch = Graph(key)
            c = branch.add_constant(np.array([1.0], np.float32), "c")
            first = Value(branch.add_node("Neg", [c], version=13, name="n1").name)
            second = first if merged_inside else Value(branch.add_node("Neg", [c], version=13, name="n2").name)
            branch.add_output("out", Value(branch.add_node("Add", [first, second], version=14).name))
            branches[key] = branch
        results.append(Value(graph.add_node("If", [condition], branches, version=21, name=name).name))
    graph.add_output("y", Value(graph.add_node("Add", results, version=14).name))
    return graph


def test_nodes_with_subgraphs_do_not_merge_but_their_bodies_are_cleaned():
    after = run_verified(PASS, _if_pair(merged_inside=False))
    assert_same_graph(after, _if_pair(merged_inside=True))
