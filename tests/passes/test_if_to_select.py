"""if-to-select: an If on a run-time condition becomes both branches and a Where, on targets without control flow."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.passes.if_to_select import if_to_select
from compiler.passes.manager import PassContext
from frontends.onnx.importer import import_model


def if_model(else_shape=(3,)):
    """y = x * 2 if flag else -x (else_shape differing from [3] makes the branches unselectable)."""
    then_branch = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [3])])
    else_nodes = [helper.make_node("Neg", ["x"], ["n"])]
    if else_shape != (3,):
        else_nodes.append(helper.make_node("Concat", ["n", "n"], ["e"], axis=0))
    else_output = "e" if else_shape != (3,) else "n"
    else_branch = helper.make_graph(else_nodes, "else", [],
                                    [helper.make_tensor_value_info(else_output, TensorProto.FLOAT, list(else_shape))])
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then_branch, else_branch=else_branch)], "g",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, [1]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def op_types(model, target):
    return {node.op_type for node in if_to_select(import_model(model), PassContext(target=target)).nodes()}


def test_cpu_selects_and_ref_keeps_the_if():
    assert "If" not in op_types(if_model(), "cpu") and "Where" in op_types(if_model(), "cpu")
    assert "If" in op_types(if_model(), "ref")


def test_branches_of_different_shapes_stay_an_if():
    assert "If" in op_types(if_model(else_shape=(6,)), "cpu")


def test_the_select_picks_the_branch_the_condition_names():
    model = runtime.load(compiler.compile(if_model(), "cpu"))
    x = np.array([1.0, -2.0, 3.0], np.float32)
    for flag, expected in ((True, 2 * x), (False, -x)):
        result = model.infer({"flag": np.array([flag]), "x": x})["y"]
        assert result.shape == (3,)
        np.testing.assert_array_equal(result, expected)
