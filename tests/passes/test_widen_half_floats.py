"""widen-half-floats: float16 ops with no half kernel compute in float32 between casts."""

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.passes.manager import PassContext
from compiler.passes.widen_half_floats import widen_half_floats
from frontends.onnx.importer import import_model


def matmul_model():
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"], name="product")], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT16, [3, 4]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT16, [4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [3, 5])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cpu_computes_a_float16_matmul_in_float32():
    graph = widen_half_floats(import_model(matmul_model()), PassContext(target="cpu"))
    matmul = next(node for node in graph.nodes() if node.op_type == "MatMul")
    assert [t.dtype for t in graph.input_types(matmul)] == ["float32", "float32"]
    assert graph.type_of(graph.outputs[0][1]).dtype == "float16"


def test_ref_keeps_float16():
    graph = widen_half_floats(import_model(matmul_model()), PassContext(target="ref"))
    assert [node.op_type for node in graph.nodes() if not node.is_input] == ["MatMul"]


def test_the_widened_matmul_is_the_float32_product_rounded_once():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)).astype(np.float16), rng.standard_normal((4, 5)).astype(np.float16)
    y = runtime.load(compiler.compile(matmul_model(), "cpu")).infer({"a": a, "b": b})["y"]
    assert y.dtype == np.float16
    np.testing.assert_allclose(y, (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16), rtol=1e-3)
