"""fold-reshapes: chains of Reshape/Flatten/Squeeze/Unsqueeze with static shapes become one
Reshape with a constant shape, and those that keep their input's shape go."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from compiler.driver import optimize
from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from tests.codegen.kernel_harness import assert_cpu_matches_ref
from compiler.passes.infer_types import infer_types
from compiler.passes.manager import PassManager, PassSpec, VerifyInstrument
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_pass

X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)


def _fold(graph: Graph) -> Graph:
    """fold-reshapes (verified), then dead-code elimination so the replaced shape constants go."""
    steps = [PassSpec("fold-reshapes"), PassSpec("eliminate-dead-code")]
    return PassManager(steps, [VerifyInstrument()]).run(infer_types(graph))


def _shape(graph: Graph, dims, name: str) -> Value:
    return graph.add_constant(np.array(dims, np.int64), name)


def _chain(graph: Graph, x: Value) -> Value:
    """[2,3,4] -Flatten-> [2,12] -Unsqueeze-> [2,1,12] -Reshape-> [4,1,6] -Squeeze-> [4,6]."""
    flat = graph.add_node("Flatten", [x], {"axis": 1}, version=21, name="flat")
    wide = graph.add_node("Unsqueeze", [Value(flat.name), _shape(graph, [1], "axes1")], version=21, name="wide")
    reshaped = graph.add_node("Reshape", [Value(wide.name), _shape(graph, [4, 1, -1], "dims")], version=21, name="re")
    return Value(graph.add_node("Squeeze", [Value(reshaped.name), _shape(graph, [1], "axes2")], version=21,
                                name="narrow").name)


def test_a_chain_of_view_ops_becomes_one_reshape_with_a_constant_shape():
    before = Graph()
    before.add_output("y", Value(before.add_node("Relu", [_chain(before, before.add_input("x", f32(2, 3, 4)))],
                                                 version=14, name="relu").name))
    expected = Graph()
    x = expected.add_input("x", f32(2, 3, 4))
    narrow = expected.add_node("Reshape", [x, _shape(expected, [4, 6], "narrow.shape")], version=14, name="narrow")
    expected.add_output("y", Value(expected.add_node("Relu", [Value(narrow.name)], version=14, name="relu").name))

    after = _fold(before.copy())
    assert_same_graph(after, expected)
    assert_same_results(before, after, {"x": X})


def test_views_that_keep_the_shape_go_and_a_chain_back_to_the_input_shape_goes_whole():
    before = Graph()
    x = before.add_input("x", f32(2, 12))
    flat = before.add_node("Flatten", [x], {"axis": 1}, version=21)
    there = before.add_node("Reshape", [Value(flat.name), _shape(before, [3, 8], "there")], version=21)
    back = before.add_node("Reshape", [Value(there.name), _shape(before, [2, 12], "back")], version=21)
    before.add_output("y", Value(before.add_node("Relu", [Value(back.name)], version=14, name="relu").name))

    expected = Graph()
    x = expected.add_input("x", f32(2, 12))
    expected.add_output("y", Value(expected.add_node("Relu", [x], version=14, name="relu").name))

    after = _fold(before.copy())
    assert_same_graph(after, expected)
    assert_same_results(before, after, {"x": X.reshape(2, 12)})


def test_a_view_with_other_readers_stays_for_them():
    before = Graph()
    x = before.add_input("x", f32(2, 3, 4))
    flat = before.add_node("Flatten", [x], {"axis": 1}, version=21, name="flat")
    before.add_output("flat", Value(flat.name))
    back = before.add_node("Reshape", [Value(flat.name), _shape(before, [6, 4], "dims")], version=21, name="back")
    before.add_output("y", Value(back.name))

    after = _fold(before.copy())
    assert after.input_values(after.node("flat"))[0] == Value("x")
    reshape = [n for n in after.nodes() if n.op_type == "Reshape"]
    assert len(reshape) == 1 and after.input_values(reshape[0])[0] == Value("x")
    assert_same_results(before, after, {"x": X})


def _kept(kind: str) -> Graph:
    graph = Graph()
    if kind == "output_would_alias_input":
        x = graph.add_input("x", f32(2, 3))
        graph.add_output("y", Value(graph.add_node("Reshape", [x, _shape(graph, [2, 3], "s")], version=21).name))
    else:  # symbolic batch: the shapes are not static
        x = graph.add_input("x", f32("n", 3, 4))
        flat = graph.add_node("Flatten", [x], {"axis": 1}, version=21)
        graph.add_output("y", Value(graph.add_node("Unsqueeze", [Value(flat.name), _shape(graph, [0], "axes")],
                                                   version=21).name))
    return graph


@pytest.mark.parametrize("kind", ["output_would_alias_input", "symbolic"])
def test_views_stay_when_removing_them_is_not_allowed_or_shapes_are_unknown(kind):
    assert_same_graph(run_pass("fold-reshapes", _kept(kind)), _kept(kind))


def test_an_empty_result_keeps_its_zero_dims():
    before = Graph()
    x = before.add_input("x", f32(0, 3))
    flat = before.add_node("Flatten", [x], {"axis": 0}, version=21)
    before.add_output("y", Value(before.add_node("Reshape", [Value(flat.name), _shape(before, [3, 0], "s")],
                                                 {"allowzero": 1}, version=21).name))
    after = _fold(before.copy())
    reshape = next(n for n in after.nodes() if n.op_type == "Reshape")
    assert reshape.attrs == {"allowzero": 1} and reshape.outputs == [TensorType("float32", (3, 0))]
    assert_same_results(before, after, {"x": np.zeros((0, 3), np.float32)})


def test_cpu_matches_ref_and_the_pass_can_be_disabled():
    nodes = [helper.make_node("Unsqueeze", ["x", "axes"], ["u"]),
             helper.make_node("Flatten", ["u"], ["f"], axis=1),
             helper.make_node("Relu", ["f"], ["r"]),
             helper.make_node("Squeeze", ["r", "axes"], ["y"])]
    graph = helper.make_graph(nodes, "views", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [24])],
                              [helper.make_tensor("axes", TensorProto.INT64, [1], [0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ops = [n.op_type for n in optimize(model, "cpu").topological_order() if not (n.is_input or n.is_constant)]
    assert ops == ["Reshape", "Relu", "Squeeze"]  # Unsqueeze -> Flatten collapsed; a lone Squeeze stays
    assert "Flatten" in {n.op_type for n in optimize(model, "cpu", disable=["fold-reshapes"]).nodes()}
    assert_cpu_matches_ref(model, {"x": X}, exact=True)
