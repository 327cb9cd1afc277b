"""ONNX import: opset normalisation, subgraph captures, external data, and errors that name the culprit."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.ir.verifier import VerificationError
from compiler.ops.interpreter import Interpreter
from frontends.onnx.importer import ModelImportError, UnsupportedModelError, import_model
from tests.models.builders import mlp_model, single_node_model

FLOAT = TensorProto.FLOAT


def info(name, shape, elem=FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def test_mlp_imports_with_symbolic_batch():
    graph = import_model(mlp_model())
    assert [n.op_type for n in graph.topological_order() if not (n.is_input or n.is_constant)] == ["MatMul", "Add", "Relu"]
    assert str(graph.type_of(graph.outputs[0][1])) == "float32[N,3]"


def test_attributes_that_became_inputs_are_normalised():
    node = helper.make_node("Squeeze", ["x"], ["y"], axes=[1], name="squeeze")
    graph = import_model(single_node_model(node, [info("x", [2, 1, 3])], [info("y", [2, 3])], opset=11))
    squeeze = graph.node("squeeze")
    assert squeeze.version == 13 and "axes" not in squeeze.attrs
    assert graph.constant_value(graph.input_values(squeeze)[1]).tolist() == [1]
    x = np.arange(6, dtype=np.float32).reshape(2, 1, 3)
    assert Interpreter(graph).run([x])[0].shape == (2, 3)


def test_legacy_softmax_flattens_at_axis():
    node = helper.make_node("Softmax", ["x"], ["y"], name="softmax")  # opset 11: axis=1 over flattened dims
    graph = import_model(single_node_model(node, [info("x", [2, 3, 4])], [info("y", [2, 3, 4])], opset=11))
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    y = Interpreter(graph).run([x])[0]
    flat = np.exp(x.reshape(2, 12)) / np.exp(x.reshape(2, 12)).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(y, flat.reshape(2, 3, 4), rtol=1e-6)


def test_if_branches_capture_outer_values():
    then_graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [], [info("t", [2])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [info("e", [2])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph, name="if")
    model = single_node_model(node, [info("c", [], TensorProto.BOOL), info("x", [2])], [info("y", [2])])
    graph = import_model(model)
    assert graph.node("if").num_inputs == 2
    x = np.array([1.0, -2.0], np.float32)
    run = Interpreter(graph)
    assert run.run([np.array(True), x])[0].tolist() == [2.0, -4.0]
    assert run.run([np.array(False), x])[0].tolist() == [-1.0, 2.0]


def test_external_data_is_loaded(tmp_path):
    model = mlp_model()
    expected = numpy_helper.to_array(model.graph.initializer[0])
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=0)
    assert (tmp_path / "weights.data").stat().st_size > 0
    graph = import_model(tmp_path / "m.onnx")
    assert np.array_equal(graph.constant_value(graph.input_values(graph.node("matmul"))[1]), expected)


def test_bad_protobuf_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07this is not a model")
    with pytest.raises(ModelImportError, match="could not parse"):
        import_model(path)
    with pytest.raises(ModelImportError, match="does not exist"):
        import_model(tmp_path / "missing.onnx")


def test_dangling_input_names_the_node():
    node = helper.make_node("Add", ["x", "nowhere"], ["y"], name="adder")
    with pytest.raises(ModelImportError, match="node 'adder' .*'nowhere'.*missing initializer"):
        import_model(single_node_model(node, [info("x", [2])], [info("y", [2])]))


def test_cycle_names_the_nodes():
    nodes = [helper.make_node("Relu", ["b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")]
    model = helper.make_model(helper.make_graph(nodes, "loop", [], [info("a", [2])]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(VerificationError, match="cycle through nodes .*first"):
        import_model(model)


def test_wrong_attribute_type_names_node_and_attribute():
    node = helper.make_node("Transpose", ["x"], ["y"], name="swap", perm=1.5)
    with pytest.raises(ModelImportError, match="node 'swap' .*attribute 'perm' has type FLOAT.*INTS"):
        import_model(single_node_model(node, [info("x", [2, 3])], [info("y", [3, 2])]))


def test_every_unsupported_op_is_listed_at_once():
    nodes = [helper.make_node("FancyOp", ["x"], ["a"], domain="com.example", name="fancy1"),
             helper.make_node("FancyOp", ["a"], ["b"], domain="com.example", name="fancy2"),
             helper.make_node("OtherOp", ["b"], ["y"], domain="com.example", name="other")]
    model = helper.make_model(helper.make_graph(nodes, "custom", [info("x", [2])], [info("y", [2])]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedModelError) as caught:
        import_model(model)
    assert [(op, names) for op, _, _, names in caught.value.unsupported] == [
        ("FancyOp", ["fancy1", "fancy2"]), ("OtherOp", ["other"])]
