"""expand-functions: ops the target cannot compile become their ONNX function bodies."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.passes.expand_functions import expand_functions
from compiler.passes.manager import PassContext
from frontends.onnx.importer import import_model


def thresholded_relu_model():
    node = helper.make_node("ThresholdedRelu", ["x"], ["y"], alpha=0.5, name="thresholded")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])


def operators(graph):
    return sorted(n.op_type for n in graph.nodes() if not (n.is_input or n.is_constant))


def test_cpu_expands_an_op_it_has_no_kernel_for():
    graph = expand_functions(import_model(thresholded_relu_model()), PassContext(target="cpu"))
    assert "ThresholdedRelu" not in operators(graph)
    assert set(operators(graph)) <= {"CastLike", "Less", "Greater", "Where"}


def test_ref_keeps_the_op():
    graph = expand_functions(import_model(thresholded_relu_model()), PassContext(target="ref"))
    assert operators(graph) == ["ThresholdedRelu"]


def test_expanded_op_computes_the_same_values():
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    native = runtime.load(compiler.compile(thresholded_relu_model(), target="cpu")).infer({"x": x})["y"]
    np.testing.assert_array_equal(native, np.where(x > 0.5, x, 0))
