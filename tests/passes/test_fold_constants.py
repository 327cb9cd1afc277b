"""fold-constants: constant subgraphs become Constant nodes named after the values they replace."""

from __future__ import annotations

import logging

import numpy as np
from onnx import TensorProto, helper

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassContext, PassManager, PassSpec, VerifyInstrument, get_pass
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_pass, run_verified
from frontends.onnx.importer import import_model

ONES = np.ones((2, 2), np.float32)


def _chain() -> Graph:
    """y = x + (a + b) * c with a, b, c constants."""
    graph = Graph()
    x = graph.add_input("x", f32(2, 2))
    a, b, c = (graph.add_constant(ONES * k, name) for k, name in ((1, "a"), (2, "b"), (3, "c")))
    total = graph.add_node("Add", [a, b], version=14, name="total")
    scaled = graph.add_node("Mul", [Value(total.name), c], version=14, name="scaled")
    graph.add_output("y", Value(graph.add_node("Add", [x, Value(scaled.name)], version=14, name="y").name))
    return graph


def test_a_chain_of_constant_nodes_folds_into_one_constant_per_value():
    expected = Graph()
    x = expected.add_input("x", f32(2, 2))
    for k, name in ((1, "a"), (2, "b"), (3, "c")):
        expected.add_constant(ONES * k, name)
    expected.add_constant(ONES * 3, "total")
    scaled = expected.add_constant(ONES * 9, "scaled")
    expected.add_output("y", Value(expected.add_node("Add", [x, scaled], version=14, name="y").name))

    after = run_verified("fold-constants", _chain())
    assert_same_graph(after, expected)
    assert_same_results(_chain(), after, {"x": ONES})


def test_shape_and_size_fold_from_known_dims():
    before = Graph()
    x = before.add_input("x", f32("n", 3, 4))
    tail = before.add_node("Shape", [x], {"start": 1}, version=21, name="tail")
    middle = before.add_node("Shape", [x], {"start": -2, "end": -1}, version=21, name="middle")
    whole = before.add_node("Shape", [x], version=21, name="whole")
    size = before.add_node("Size", [x], version=21, name="size")
    for node in (tail, middle, whole, size):
        before.add_output(node.name, Value(node.name))

    expected = Graph()
    x = expected.add_input("x", f32("n", 3, 4))
    expected.add_output("tail", expected.add_constant(np.array([3, 4], np.int64), "tail"))
    expected.add_output("middle", expected.add_constant(np.array([3], np.int64), "middle"))
    expected.add_output("whole", Value(expected.add_node("Shape", [x], version=21, name="whole").name))
    expected.add_output("size", Value(expected.add_node("Size", [x], version=21, name="size").name))

    assert_same_graph(run_verified("fold-constants", before), expected)


def test_static_size_folds():
    before = Graph()
    before.add_output("size", Value(before.add_node("Size", [before.add_input("x", f32(2, 3, 4))], version=21).name))
    expected = Graph()
    expected.add_input("x", f32(2, 3, 4))
    expected.add_output("size", expected.add_constant(np.array(24, np.int64), "size"))
    assert_same_graph(run_pass("fold-constants", before), expected)


def test_only_the_used_outputs_of_a_multi_output_node_become_constants():
    before = Graph()
    x = before.add_input("x", f32(1, 2))
    data = before.add_constant(np.array([[1, 2], [3, 4], [5, 6]], np.float32), "data")
    split = before.add_node("Split", [data], {"axis": 0, "num_outputs": 3}, version=18, num_outputs=3,
                            output_names=["top", "mid", "bottom"])
    before.add_output("y", Value(before.add_node("Mul", [x, Value(split.name, 0)], version=14, name="y").name))
    before.add_output("bottom", Value(split.name, 2))

    expected = Graph()
    x = expected.add_input("x", f32(1, 2))
    expected.add_constant(np.array([[1, 2], [3, 4], [5, 6]], np.float32), "data")
    top = expected.add_constant(np.array([[1, 2]], np.float32), "top")
    expected.add_output("y", Value(expected.add_node("Mul", [x, top], version=14, name="y").name))
    expected.add_output("bottom", expected.add_constant(np.array([[5, 6]], np.float32), "bottom"))

    assert_same_graph(run_verified("fold-constants", before), expected)


def _unfoldable() -> Graph:
    """Constant-input nodes that must stay: a random draw, a sequence result, a training Dropout."""
    graph = Graph()
    a = graph.add_constant(ONES, "a")
    graph.add_output("noise", Value(graph.add_node("RandomNormalLike", [a], version=22, name="noise").name))
    graph.add_output("seq", Value(graph.add_node("SequenceConstruct", [a, a], version=11, name="seq").name))
    training = graph.add_constant(np.array(True), "training")
    dropout = graph.add_node("Dropout", [a, None, training], version=13, name="drop")
    graph.add_output("drop", Value(dropout.name))
    return graph


def test_random_ops_sequences_and_training_dropout_are_not_folded():
    assert_same_graph(run_pass("fold-constants", _unfoldable()), _unfoldable())


def test_results_larger_than_max_elements_are_not_folded():
    assert_same_graph(run_pass("fold-constants", _chain(), max_elements=3), _chain())
    assert "Mul" not in str(run_pass("fold-constants", _chain(), max_elements=4))


def test_a_result_known_to_be_huge_is_not_even_computed(caplog):
    before = Graph()
    shape = before.add_constant(np.array([1 << 20, 1 << 20], np.int64), "shape")
    before.add_output("y", Value(before.add_node("ConstantOfShape", [shape], version=21, name="y").name))
    with caplog.at_level(logging.WARNING, logger="kiln.passes"):
        assert_same_graph(run_pass("fold-constants", before.copy()), before)
    assert caplog.text == ""  # computing it would fail (out of memory) and say so


def test_unused_nodes_are_left_to_dead_code_elimination():
    before = Graph()
    before.add_node("Neg", [before.add_constant(ONES, "a")], version=13, name="unused")
    assert_same_graph(run_pass("fold-constants", before.copy()), before)


def test_a_result_that_contradicts_the_recorded_type_is_not_folded():
    before = Graph()
    a = before.add_constant(ONES, "a")
    before.add_output("y", Value(before.add_node("Neg", [a], version=13, outputs=[TensorType("float16", (2, 2))]).name))
    expected = before.copy()
    assert str(get_pass("fold-constants")(before, PassContext())) == str(expected)


def test_a_node_whose_kernel_fails_stays_and_is_logged(caplog):
    before = Graph()
    data = before.add_constant(np.arange(6, dtype=np.float32), "data")
    indices = before.add_constant(np.array([7], np.int64), "indices")
    before.add_output("y", Value(before.add_node("Gather", [data, indices], version=13, name="y").name))
    expected = before.copy()
    expected.node("y").outputs = [TensorType("float32", (1,))]  # its type is inferred on the way

    with caplog.at_level(logging.WARNING, logger="kiln.passes"):
        after = get_pass("fold-constants")(before, PassContext())  # index 7 is out of range for 6 elements
    assert str(after) == str(expected)
    assert "node y (Gather) not folded" in caplog.text


def _if_graph(folded: bool, constant_condition: bool = False) -> Graph:
    """If(condition) with constant branches computing Neg(c); `folded` gives the branches already folded."""
    branches = {}
    for key, value in (("then_branch", 1.0), ("else_branch", 2.0)):
        branch = Graph(key)
        c = branch.add_constant(np.array([value], np.float32), "c")
        if folded:
            neg = branch.add_constant(np.array([-value], np.float32), "neg")
        else:
            neg = Value(branch.add_node("Neg", [c], version=13).name)
        branch.add_output("out", neg)
        branches[key] = branch
    graph = Graph()
    if constant_condition:
        condition = graph.add_constant(np.array(True), "condition")
    else:
        condition = graph.add_input("condition", TensorType("bool", ()))
    graph.add_output("y", Value(graph.add_node("If", [condition], branches, version=21).name))
    return graph


def test_nodes_with_subgraphs_stay_but_their_bodies_fold():
    assert_same_graph(run_verified("fold-constants", _if_graph(folded=False)), _if_graph(folded=True))


def test_an_if_with_a_constant_condition_becomes_its_taken_branch():
    folded = run_verified("fold-constants", _if_graph(folded=False, constant_condition=True))
    assert [node.op_type for node in folded.nodes() if not node.is_constant] == []
    assert folded.constant_value(folded.outputs[0][1]).tolist() == [-1.0]


def test_an_imported_shape_computation_folds_and_keeps_its_results():
    """Reshape(x, Concat(Gather(Shape(x), [0]), [-1])) as exporters write it, with a static x."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "first"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="flatten"),
    ]
    initializers = [helper.make_tensor("first", TensorProto.INT64, [1], [0]),
                    helper.make_tensor("rest", TensorProto.INT64, [1], [-1])]
    model = helper.make_model(helper.make_graph(
        nodes, "flatten", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])], initializers),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = import_model(model)
    before = graph.copy()

    after = PassManager([PassSpec("fold-constants"), PassSpec("eliminate-dead-code"), PassSpec("infer-types")],
                        [VerifyInstrument()]).run(graph)
    assert [node.op_type for node in after.topological_order() if not node.is_input] == ["Constant", "Reshape"]
    assert after.constant_value(after.input_values(after.node("flatten"))[1]).tolist() == [2, -1]
    assert after.type_of(after.outputs[0][1]) == TensorType("float32", (2, 12))
    assert_same_results(before, after, {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4)})
