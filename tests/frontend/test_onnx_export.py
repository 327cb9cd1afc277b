"""compiler/ops/onnx_export.py: an imported graph written back as ONNX computes the same values."""

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from compiler.ops.onnx_export import graph_to_proto
from frontends.onnx.importer import import_model


def _if_model():
    """y = If(flag) then x * w (w captured from the outer graph) else -x."""
    then_branch = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [3])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, [3])])
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then_branch, else_branch=else_branch)], "g",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])])
    graph.node.append(helper.make_node("Identity", ["y"], ["out"]))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_exported_graph_with_captures_runs_like_the_original():
    exported = helper.make_model(graph_to_proto(import_model(_if_model())), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(exported)
    x = np.array([1.0, -2.0, 4.0], np.float32)
    for flag in (True, False):
        feeds = {"flag": np.array(flag), "x": x}
        expected = ReferenceEvaluator(_if_model()).run(None, feeds)
        np.testing.assert_array_equal(ReferenceEvaluator(exported).run(None, feeds)[0], expected[0])
