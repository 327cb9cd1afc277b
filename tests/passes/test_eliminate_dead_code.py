"""eliminate-dead-code: what cannot reach an output goes, graph inputs always stay."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_pass, run_verified


def test_unreachable_nodes_and_constants_are_removed_but_inputs_stay():
    before = Graph()
    x = before.add_input("x", f32(3))
    before.add_input("unused", f32(3))
    c = before.add_constant(np.ones(3, np.float32), "c")
    before.add_constant(np.zeros(3, np.float32), "orphan")
    dead = before.add_node("Mul", [x, c], version=14, name="dead")
    before.add_node("Neg", [Value(dead.name)], version=13, name="dead_too")
    before.add_output("y", Value(before.add_node("Add", [x, c], version=14, name="y").name))
    original = before.copy()

    expected = Graph()
    x = expected.add_input("x", f32(3))
    expected.add_input("unused", f32(3))
    c = expected.add_constant(np.ones(3, np.float32), "c")
    expected.add_output("y", Value(expected.add_node("Add", [x, c], version=14, name="y").name))

    after = run_verified("eliminate-dead-code", before)
    assert_same_graph(after, expected)
    assert after.inputs == ["x", "unused"]
    assert_same_results(original, after, {"x": np.arange(3, dtype=np.float32), "unused": np.zeros(3, np.float32)})


def test_a_node_stays_when_any_of_its_outputs_is_used():
    def graph() -> Graph:
        g = Graph()
        x = g.add_input("x", f32(4))
        split = g.add_node("Split", [x], {"num_outputs": 2}, version=18, num_outputs=2)
        g.add_output("y", Value(split.name, 1))
        return g

    assert_same_graph(run_pass("eliminate-dead-code", graph()), graph())


def _if_graph(with_dead_code: bool) -> Graph:
    """y = If(condition) whose branches capture x and z but read only x; `with_dead_code` adds unused nodes."""
    graph = Graph()
    condition = graph.add_input("condition", TensorType("bool", ()))
    x = graph.add_input("x", f32(2))
    z = graph.add_input("z", f32(2))
    branches = {}
    for key, op in (("then_branch", "Neg"), ("else_branch", "Abs")):
        branch = Graph(key)
        for name in ("x", "z"):
            branch.node(branch.add_input(name, None).node).attrs["captured_from"] = name
        if with_dead_code:
            branch.add_node("Exp", [Value("x")], version=13, name="wasted")
            branch.add_constant(np.zeros(2, np.float32), "orphan")
        branch.add_output("out", Value(branch.add_node(op, [Value("x")], version=13).name))
        branches[key] = branch
    graph.add_output("y", Value(graph.add_node("If", [condition, x, z], branches, version=21).name))
    if with_dead_code:
        unused_branches = {key: branch.copy() for key, branch in branches.items()}
        graph.add_node("If", [condition, x, z], unused_branches, version=21, name="unused_if")
    return graph


def test_subgraphs_are_cleaned_but_keep_their_inputs():
    after = run_verified("eliminate-dead-code", _if_graph(with_dead_code=True))
    assert_same_graph(after, _if_graph(with_dead_code=False))
    assert after.node("if").attrs["then_branch"].inputs == ["x", "z"]
    feeds = {"condition": np.array(False), "x": np.array([-1, 2], np.float32), "z": np.zeros(2, np.float32)}
    assert_same_results(_if_graph(with_dead_code=True), after, feeds)
