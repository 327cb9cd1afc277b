"""Graph verbs, deterministic printing, DOT, verification and serialization."""

import numpy as np
import pytest

from compiler.ir.dot import to_dot
from compiler.ir.graph import Graph, Value
from compiler.ir.serialize import WeightsWriter, decode_graph, encode_graph
from compiler.ir.types import SequenceType, TensorType
from compiler.ir.verifier import VerificationError, verify
from compiler.passes.infer_types import infer_types


def small_graph() -> Graph:
    graph = Graph("small")
    x = graph.add_input("x", TensorType("float32", ("N", 4)))
    w = graph.add_constant(np.ones((4, 3), np.float32), "w")
    matmul = graph.add_node("MatMul", [x, w], version=13, name="mm")
    relu = graph.add_node("Relu", [Value(matmul.name)], version=14, name="relu")
    graph.add_output("y", Value(relu.name))
    return infer_types(graph)


def test_symbolic_dims_propagate():
    graph = small_graph()
    assert graph.type_of(Value("relu")) == TensorType("float32", ("N", 3))


def test_printer_is_readable_and_deterministic():
    text = str(small_graph())
    assert text == str(small_graph())
    assert text.splitlines() == [
        "graph small(%x: float32[N,4]) {",
        "  %w = kiln::Constant(float32[4, 3]) : float32[4,3]",
        "  %mm = MatMul-13(%x, %w) : float32[N,3]",
        "  %relu = Relu-14(%mm) : float32[N,3]",
        "  return y=%relu",
        "}",
    ]


def test_dot_lists_nodes_and_typed_edges():
    dot = to_dot(small_graph())
    assert dot.startswith('digraph "small" {')
    assert '"mm" -> "relu" [label="float32[N,3]"]' in dot


def test_replace_node_rewires_uses_and_keeps_value_names():
    graph = small_graph()
    new = graph.replace_node("relu", "Sigmoid", [Value("mm")], version=13)
    assert graph.outputs == [("y", Value(new.name))]
    assert graph.value_name(Value(new.name)) == "relu"
    assert "relu" not in graph
    verify(graph, check_types=True)


def test_remove_used_node_is_refused():
    graph = small_graph()
    with pytest.raises(ValueError, match="still used"):
        graph.remove_node("mm")


def test_copy_is_independent():
    graph = small_graph()
    clone = graph.copy()
    clone.replace_node("relu", "Sigmoid", [Value("mm")], version=13)
    assert "relu" in graph and graph.node("relu").op_type == "Relu"


def test_verifier_reports_cycle():
    graph = small_graph()
    graph.set_input("mm", 0, Value("relu"))
    with pytest.raises(VerificationError, match="cycle"):
        verify(graph)


def test_verifier_reports_arity_and_types():
    graph = small_graph()
    graph.set_input("mm", 1, None)
    with pytest.raises(VerificationError, match="required input 1"):
        verify(graph)
    graph = small_graph()
    graph.node("relu").outputs[0] = TensorType("int64", ("N", 3))
    with pytest.raises(VerificationError, match="recorded as int64"):
        verify(graph, check_types=True)


def test_tensor_type_rejects_bad_dims():
    with pytest.raises(ValueError, match="bad dim"):
        TensorType("float32", (-1, 3))
    with pytest.raises(ValueError, match="unknown dtype"):
        TensorType("float31", (1,))
    assert str(SequenceType(TensorType("int64", None))) == "seq<int64[*]>"


def test_serialization_round_trip_is_exact():
    graph = small_graph()
    weights = WeightsWriter()
    encoded = encode_graph(graph, weights)
    offsets = [n["attrs"]["value"]["tensor"]["offset"] for n in encoded["nodes"] if n["op"] == "Constant"]
    assert offsets and all(offset % 64 == 0 for offset in offsets)
    decoded = decode_graph(encoded, bytes(weights.blob))
    assert str(decoded) == str(graph)
