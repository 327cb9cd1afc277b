"""Small models for the fp16 tests, built in code."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "fp16", inputs, outputs,
                              initializer=[numpy_helper.from_array(value, name) for name, value in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def overflow_model():
    """x[2,8] -> MatMul "big" (weights 2e4: |big| passes 65504 on standard-normal x) -> two Muls by
    1e-3 and 2e-3 -> Add -> y, back in float16 range -> ReduceMax "peak" -> z. `big` is an output too,
    so no fusion hides it."""
    initializers = {"W": np.full((8, 4), 2e4, np.float32), "s1": np.array(1e-3, np.float32),
                    "s2": np.array(2e-3, np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["big"], name="big"),
             helper.make_node("Mul", ["big", "s1"], ["a"], name="scale1"),
             helper.make_node("Mul", ["big", "s2"], ["b"], name="scale2"),
             helper.make_node("Add", ["a", "b"], ["y"], name="sum"),
             helper.make_node("ReduceMax", ["y"], ["z"], name="peak", keepdims=0)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                  [helper.make_tensor_value_info("z", TensorProto.FLOAT, []),
                   helper.make_tensor_value_info("big", TensorProto.FLOAT, [2, 4])], initializers)


def conv_model(weights: dict[str, np.ndarray] | None = None):
    """x[1,3,12,12] -> Conv(w 16x3x3x3, bias) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(fc 10x16) -> y[1,10].
    `weights` replaces any of w, bias, fc, fc_bias (seeded normal by default)."""
    rng = np.random.default_rng(7)
    initializers = {"w": (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32),
                    "bias": (rng.standard_normal(16) * 0.1).astype(np.float32),
                    "fc": (rng.standard_normal((10, 16)) * 0.3).astype(np.float32),
                    "fc_bias": (rng.standard_normal(10) * 0.1).astype(np.float32), **(weights or {})}
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc", "fc_bias"], ["y"], name="fc", transB=1)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], initializers)


def rounded_to_half(model, keep=()):
    """A copy of `model` whose float32 initializers (but those named in `keep`) hold their float16-rounded
    values, still as float32."""
    copy = type(model)()
    copy.CopyFrom(model)
    for index, tensor in enumerate(copy.graph.initializer):
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.float32 and tensor.name not in keep:
            copy.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(array.astype(np.float16).astype(np.float32), tensor.name))
    return copy
