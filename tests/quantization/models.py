"""Small float models for the int8 quantization tests, built in code with seeded weights."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs: dict[str, list], outputs: dict[str, list], initializers: dict[str, np.ndarray],
          opset: int = 17):
    graph = helper.make_graph(
        nodes, "q", [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs.items()],
        initializer=[numpy_helper.from_array(value, name) for name, value in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def conv_relu_matmul(**weights: np.ndarray):
    """x[1,3,8,8] -> Conv "conv" (W 8x3x3x3, B) -> Relu "relu" -> MatMul "matmul" (M 8x5) -> y[1,8,8,5].
    `weights` replaces any of W, B, M."""
    rng = np.random.default_rng(3)
    initializers = {"W": (rng.standard_normal((8, 3, 3, 3)) * 0.4).astype(np.float32),
                    "B": (rng.standard_normal(8) * 0.2).astype(np.float32),
                    "M": (rng.standard_normal((8, 5)) * 0.5).astype(np.float32), **weights}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "M"], ["y"], name="matmul")]
    return model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 8, 8, 5]}, initializers)


def small_cnn():
    """Every op the quantizer handles: Conv+BatchNormalization+Clip(0, 6), MaxPool, a residual Add and Relu,
    AveragePool, Concat, GlobalAveragePool, Flatten, Gemm(transB=1) -> y[1,10]."""
    rng = np.random.default_rng(5)
    f = lambda *shape: (rng.standard_normal(shape) * 0.3).astype(np.float32)  # noqa: E731
    initializers = {"w1": f(8, 3, 3, 3), "b1": f(8), "gamma": rng.uniform(0.5, 1.5, 8).astype(np.float32),
                    "beta": f(8), "mean": f(8), "var": rng.uniform(0.5, 1.5, 8).astype(np.float32),
                    "zero": np.array(0, np.float32), "six": np.array(6, np.float32),
                    "w2": f(8, 8, 3, 3), "w3": f(4, 8, 1, 1), "fc_w": f(10, 12), "fc_bias": f(10)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"], name="bn1"),
             helper.make_node("Clip", ["n1", "zero", "six"], ["a1"], name="relu6"),
             helper.make_node("MaxPool", ["a1"], ["p1"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "p1"], ["s"], name="residual"),
             helper.make_node("Relu", ["s"], ["a2"], name="relu2"),
             helper.make_node("Conv", ["a2", "w3"], ["c3"], name="conv3"),
             helper.make_node("AveragePool", ["a2"], ["q"], name="avgpool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["c3", "q"], ["cat"], name="concat", axis=1),
             helper.make_node("GlobalAveragePool", ["cat"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_bias"], ["y"], name="fc", transB=1)]
    return model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 10]}, initializers)


def attention():
    """q, k [1,4,6] -> MatMul "scores" (q x k^T, two activations) -> Softmax -> MatMul "mix" (x v) -> y."""
    rng = np.random.default_rng(9)
    initializers = {"wk": (rng.standard_normal((6, 6)) * 0.4).astype(np.float32),
                    "v": (rng.standard_normal((4, 6)) * 0.4).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "wk"], ["k"], name="key"),
             helper.make_node("Transpose", ["k"], ["kt"], name="transpose", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "kt"], ["scores"], name="scores"),
             helper.make_node("Softmax", ["scores"], ["weights"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["weights", "v"], ["y"], name="mix")]
    return model(nodes, {"x": [1, 4, 6]}, {"y": [1, 4, 6]}, initializers)


def samples(onnx_model, count: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """[count, *shape] seeded standard-normal calibration samples per input."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal((count, *[d.dim_value for d in i.type.tensor_type.shape.dim]))
            .astype(np.float32) for i in onnx_model.graph.input}
