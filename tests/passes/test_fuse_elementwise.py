"""fuse-elementwise: connected elementwise nodes become one kiln::FusedElementwise node."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import KILN_DOMAIN, Graph, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassContext, get_pass
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_pass, run_verified

FEEDS = {"x": np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4),
         "b": np.array([[0.5], [-1.0], [2.0]], np.float32)}


def _fused(graph: Graph, inputs, steps, names, output: str) -> Value:
    node = graph.add_node("FusedElementwise", inputs, {"steps": steps, "fused_nodes": names}, domain=KILN_DOMAIN,
                          name=output, output_names=[output])
    return Value(node.name)


def _mul_add_relu() -> Graph:
    """y = Relu(x * b + x), b broadcasting over x."""
    graph = Graph()
    x, b = graph.add_input("x", f32(2, 3, 4)), graph.add_input("b", f32(3, 1))
    mul = graph.add_node("Mul", [x, b], version=14, name="mul")
    add = graph.add_node("Add", [Value(mul.name), x], version=14, name="add")
    graph.add_output("y", Value(graph.add_node("Relu", [Value(add.name)], version=14, name="y").name))
    return graph


def test_mul_add_relu_chain_becomes_one_node():
    expected = Graph()
    x, b = expected.add_input("x", f32(2, 3, 4)), expected.add_input("b", f32(3, 1))
    steps = [["Mul", 14, [], [0, 1]], ["Add", 14, [], [2, 0]], ["Relu", 14, [], [3]]]
    expected.add_output("y", _fused(expected, [x, b], steps, ["mul", "add", "y"], "y"))

    after = run_verified("fuse-elementwise", _mul_add_relu())
    assert_same_graph(after, expected)
    assert_same_results(_mul_add_relu(), after, FEEDS)


def test_a_value_also_used_outside_the_chain_stops_fusion():
    before = _mul_add_relu()
    before.add_output("product", Value("mul"))  # the Mul result is needed by itself too

    expected = Graph()
    x, b = expected.add_input("x", f32(2, 3, 4)), expected.add_input("b", f32(3, 1))
    mul = Value(expected.add_node("Mul", [x, b], version=14, name="mul").name)
    steps = [["Add", 14, [], [0, 1]], ["Relu", 14, [], [2]]]
    expected.add_output("y", _fused(expected, [mul, x], steps, ["add", "y"], "y"))
    expected.add_output("product", mul)

    after = run_verified("fuse-elementwise", before)
    assert_same_graph(after, expected)
    assert_same_results(before, after, FEEDS)


def test_a_value_read_by_another_op_stops_fusion():
    before = _mul_add_relu()
    axes = before.add_constant(np.array([1], np.int64), "axes")
    before.add_output("sum", Value(before.add_node("ReduceSum", [Value("add"), axes], version=13, name="sum").name))

    after = run_verified("fuse-elementwise", before)
    fused = [n.attrs["fused_nodes"] for n in after.nodes() if n.op_type == "FusedElementwise"]
    assert fused == [["mul", "add"]] and after.node("y").op_type == "Relu"  # Add's result leaves its group
    assert_same_results(before, after, FEEDS)


def test_a_value_used_twice_inside_the_group_is_computed_once():
    """y = t * Sigmoid(t), t = x + b: t feeds two fused steps, so it is one step read twice."""
    before = Graph()
    x, b = before.add_input("x", f32(2, 3, 4)), before.add_input("b", f32(3, 1))
    t = Value(before.add_node("Add", [x, b], version=14, name="t").name)
    gate = before.add_node("Sigmoid", [t], version=13, name="gate")
    before.add_output("y", Value(before.add_node("Mul", [t, Value(gate.name)], version=14, name="y").name))

    expected = Graph()
    x, b = expected.add_input("x", f32(2, 3, 4)), expected.add_input("b", f32(3, 1))
    steps = [["Add", 14, [], [0, 1]], ["Sigmoid", 13, [], [2]], ["Mul", 14, [], [2, 3]]]
    expected.add_output("y", _fused(expected, [x, b], steps, ["t", "gate", "y"], "y"))

    after = run_verified("fuse-elementwise", before)
    assert_same_graph(after, expected)
    assert_same_results(before, after, FEEDS)


def test_a_smaller_broadcast_producer_is_not_recomputed_per_element():
    """Sqrt(b) has 3 elements, the product 24: fused, Sqrt would run 8 times per value, so it stays."""
    before = Graph()
    x, b = before.add_input("x", f32(2, 3, 4)), before.add_input("b", f32(3, 1))
    root = before.add_node("Sqrt", [b], version=13, name="root")
    mul = before.add_node("Mul", [x, Value(root.name)], version=14, name="mul")
    before.add_output("y", Value(before.add_node("Tanh", [Value(mul.name)], version=13, name="y").name))

    after = run_verified("fuse-elementwise", before)
    fused = [n for n in after.nodes() if n.op_type == "FusedElementwise"]
    assert [n.attrs["fused_nodes"] for n in fused] == [["mul", "y"]]
    assert "root" in after
    assert_same_results(before, after, {"x": FEEDS["x"], "b": np.abs(FEEDS["b"])})


def test_attributes_absent_inputs_and_float_casts_are_kept():
    """Clip with only a max, LeakyRelu's alpha and a Cast to float64 are steps; a Cast to int32 is not."""
    before = Graph()
    x = before.add_input("x", f32(2, 3, 4))
    high = before.add_constant(np.array(1.5, np.float32), "high")
    clip = before.add_node("Clip", [x, None, high], version=13, name="clip")
    leaky = before.add_node("LeakyRelu", [Value(clip.name)], {"alpha": 0.2}, version=16, name="leaky")
    wide = before.add_node("Cast", [Value(leaky.name)], {"to": 11}, version=21, name="wide")  # float64
    before.add_output("y", Value(before.add_node("Cast", [Value(wide.name)], {"to": 6}, version=21, name="y").name))

    expected = Graph()
    x = expected.add_input("x", f32(2, 3, 4))
    high = expected.add_constant(np.array(1.5, np.float32), "high")
    steps = [["Clip", 13, [], [0, None, 1]], ["LeakyRelu", 16, [["alpha", 0.2]], [2]], ["Cast", 21, [["to", 11]], [3]]]
    wide = _fused(expected, [x, high], steps, ["clip", "leaky", "wide"], "wide")
    expected.add_output("y", Value(expected.add_node("Cast", [wide], {"to": 6}, version=21, name="y").name))

    after = run_verified("fuse-elementwise", before)
    assert_same_graph(after, expected)
    assert_same_results(before, after, {"x": FEEDS["x"]})


def test_integer_and_boolean_steps_mix():
    """Where(x > 0, x, x * 3) on int32: a comparison's bool result feeds Where inside the group."""
    before = Graph()
    x = before.add_input("x", TensorType("int32", (5,)))
    zero = before.add_constant(np.array(0, np.int32), "zero")
    three = before.add_constant(np.array(3, np.int32), "three")
    positive = before.add_node("Greater", [x, zero], version=13, name="positive")
    scaled = before.add_node("Mul", [x, three], version=14, name="scaled")
    before.add_output("y", Value(before.add_node("Where", [Value(positive.name), x, Value(scaled.name)],
                                                 version=16, name="y").name))

    after = run_verified("fuse-elementwise", before)
    assert [n.op_type for n in after.nodes() if not (n.is_input or n.is_constant)] == ["FusedElementwise"]
    assert_same_results(before, after, {"x": np.arange(-2, 3, dtype=np.int32)})


def test_a_lone_elementwise_node_is_left_as_it_is():
    before = Graph()
    before.add_output("y", Value(before.add_node("Relu", [before.add_input("x", f32(4))], version=14, name="y").name))
    expected = Graph()
    relu = expected.add_node("Relu", [expected.add_input("x", f32(4))], version=14, name="y")
    expected.add_output("y", Value(relu.name))
    assert_same_graph(run_pass("fuse-elementwise", before), expected)


def test_fold_constants_evaluates_a_fused_node_of_constants():
    graph = Graph()
    a = graph.add_constant(np.array([-1.0, 2.0], np.float32), "a")
    doubled = graph.add_node("Add", [a, a], version=14, name="doubled")
    graph.add_output("y", Value(graph.add_node("Relu", [Value(doubled.name)], version=14, name="y").name))
    fused = run_pass("fuse-elementwise", graph)
    assert any(n.op_type == "FusedElementwise" for n in fused.nodes())

    folded = get_pass("fold-constants")(fused, PassContext())
    assert folded.constant_value(folded.outputs[0][1]).tolist() == [0.0, 4.0]
