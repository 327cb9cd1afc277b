"""Half storage (gpu, precision fp16) around kept nodes, compared structurally with the expected graph:
a node that reads a float32 value computes in float32 between Casts."""

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from compiler.precision.fp16_check import Fp16Plan
from compiler.precision.half_storage import stored_in_half


def before() -> Graph:
    """x -> Add(c) "a" -> Mul(a, a) "b" (kept) -> Relu "r" -> Neg "n" -> output; r is also an output."""
    graph = Graph("g")
    x = graph.add_input("x", TensorType("float32", (4,)))
    c = graph.add_constant(np.arange(4, dtype=np.float32), "c")
    float32 = [TensorType("float32", (4,))]
    graph.add_node("Add", [x, c], outputs=float32, name="a")
    b = graph.add_node("Mul", [Value("a", 0), Value("a", 0)], outputs=float32, name="b")
    r = graph.add_node("Relu", [Value(b.name, 0)], outputs=float32, name="r")
    n = graph.add_node("Neg", [Value(r.name, 0)], outputs=float32, name="n")
    graph.add_output("n", Value(n.name, 0))
    graph.add_output("r", Value(r.name, 0))
    return graph


def summary(graph: Graph) -> list[tuple]:
    """(node, op, [input nodes], output dtype) in topological order."""
    return [(node.name, node.op_type, [v.node for v in graph.input_values(node)], node.outputs[0].dtype)
            for node in graph.topological_order()]


def test_kept_node_and_its_reader_compute_in_float32_between_casts():
    graph = stored_in_half(before(), Fp16Plan(kept_nodes={"b": "overflow"}))
    assert summary(graph) == [
        ("x", "Input", [], "float16"),
        ("c", "Constant", [], "float16"),
        ("a", "Add", ["x", "c"], "float16"),
        ("a.widen", "Cast", ["a"], "float32"),
        ("b", "Mul", ["a.widen", "a.widen"], "float32"),
        ("r", "Relu", ["b"], "float32"),
        ("r.narrow0", "Cast", ["r"], "float16"),
        ("n", "Neg", ["r.narrow0"], "float16"),
    ]
    assert np.asarray(graph.node("c").attrs["value"]).dtype == np.float16
    assert graph.outputs == [("n", Value("n", 0)), ("r", Value("r", 0))]  # r stays a float32 output


def test_without_kept_values_every_float32_tensor_is_half():
    graph = stored_in_half(before())
    assert [(name, op, dtype) for name, op, _, dtype in summary(graph)] == [
        ("x", "Input", "float16"), ("c", "Constant", "float16"), ("a", "Add", "float16"), ("b", "Mul", "float16"),
        ("r", "Relu", "float16"), ("n", "Neg", "float16")]


def test_kept_weight_stays_float32_and_its_reader_widens_the_rest():
    graph = stored_in_half(before(), Fp16Plan(kept_weights={"c": "underflow"}))
    assert summary(graph)[:4] == [("x", "Input", [], "float16"), ("c", "Constant", [], "float32"),
                                  ("x.widen", "Cast", ["x"], "float32"), ("a", "Add", ["x.widen", "c"], "float32")]
    assert summary(graph)[4] == ("a.narrow0", "Cast", ["a"], "float16")
