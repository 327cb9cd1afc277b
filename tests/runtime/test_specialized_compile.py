"""compile(shapes=..., freeze=...): static shapes for symbolic inputs, inputs frozen to constants,
and the onnx backend compiling at run time for the inputs it is given."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.specialize import SpecializationError, shape_setting_inputs
from frontends.onnx.backend import get_backend
from frontends.onnx.importer import import_model
from runtime import InputError


def _reshape_model():
    """y = Reshape(Relu(x), Cast(shape)): x has a symbolic batch, `shape` is a graph input."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Cast", ["shape"], ["s"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["r", "s"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6]),
              helper.make_tensor_value_info("shape", TensorProto.INT32, [2])]
    graph = helper.make_graph(nodes, "reshape", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_shape_setting_input_is_found_through_other_ops():
    assert shape_setting_inputs(import_model(_reshape_model())) == ["shape"]


def test_frozen_and_reshaped_inputs_compile_for_the_cpu():
    artifact = compiler.compile(_reshape_model(), "cpu", shapes={"x": [2, 6]}, freeze={"shape": np.array([3, 4], np.int32)})
    model = runtime.load(artifact)
    assert [(i.name, i.shape) for i in model.inputs] == [("x", (2, 6))]
    assert model.outputs[0].shape == (3, 4)
    x = np.arange(-6, 6, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(model.infer({"x": x})["y"], np.maximum(x, 0).reshape(3, 4))


def test_feeding_a_frozen_input_says_it_was_frozen():
    model = runtime.load(compiler.compile(_reshape_model(), "cpu", shapes={"x": [2, 6]},
                                          freeze={"shape": np.array([3, 4], np.int32)}))
    with pytest.raises(InputError, match="frozen"):
        model.infer({"x": np.zeros((2, 6), np.float32), "shape": np.array([3, 4], np.int32)})


@pytest.mark.parametrize("shapes, freeze, message", [
    ({"x": [2, 6, 1]}, {}, "rank 3"),
    ({"x": [2, 5]}, {}, "axis 1 is fixed to 6"),
    ({"z": [1]}, {}, "the model's inputs are"),
    ({}, {"shape": np.array([3, 4], np.int64)}, "is int32"),
    ({}, {"shape": np.array([3, 4, 1], np.int32)}, "axis 0 is fixed to 2"),
])
def test_a_bad_specialisation_is_a_clear_error(shapes, freeze, message):
    with pytest.raises(SpecializationError, match=message):
        compiler.compile(_reshape_model(), "ref", shapes=shapes, freeze=freeze)


def test_the_backend_compiles_one_artifact_per_input_specialisation():
    rep = get_backend("cpu").prepare(_reshape_model())
    for batch, shape in ((2, [3, 4]), (2, [4, 3]), (1, [2, 3])):
        x = np.linspace(-1, 1, batch * 6, dtype=np.float32).reshape(batch, 6)
        (y,) = rep.run([x, np.array(shape, np.int32)])
        np.testing.assert_array_equal(y, np.maximum(x, 0).reshape(shape))
    assert len(rep._specialized) == 3


def test_a_new_shape_that_breaks_a_fixed_reshape_names_the_node():
    """x[N, 4] @ W[4, 3] -> Reshape to [2, 3]: N = 2 fits, N = 3 leaves 9 elements for 6 places."""
    from onnx import numpy_helper

    from compiler.ops.onnx_semantics import OpInferenceError

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="project"),
         helper.make_node("Reshape", ["h", "target"], ["y"], name="to_2x3")], "fixed_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.ones((4, 3), np.float32), "W"),
                     numpy_helper.from_array(np.array([2, 3], np.int64), "target")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    runtime.load(compiler.compile(model, "cpu", shapes={"x": [2, 4]}))
    with pytest.raises(OpInferenceError, match=r"node 'to_2x3' \(Reshape\): cannot reshape \[3, 3\] \(9 elements\)"):
        compiler.compile(model, "cpu", shapes={"x": [3, 4]})
