"""Small ONNX models built in code for tests (nothing generated is committed)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def mlp_model(batch="N"):
    """x[batch,4] -> MatMul(W) -> Add(b) -> Relu -> y[batch,3]."""
    rng = np.random.default_rng(1)
    weights = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="matmul"),
         helper.make_node("Add", ["h", "b"], ["a"], name="add"),
         helper.make_node("Relu", ["a"], ["y"], name="relu")],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        initializer=[weights, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def single_node_model(node, inputs, outputs, opset=17, initializer=()):
    graph = helper.make_graph([node], "single", inputs, outputs, initializer=list(initializer))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def relu_det_neg():
    """Relu and Neg run on the gpu target; Det has no gpu kernel, so it goes to the cpu."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                               helper.make_node("Det", ["r"], ["d"], name="det"),
                               helper.make_node("Neg", ["d"], ["y"], name="neg")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
