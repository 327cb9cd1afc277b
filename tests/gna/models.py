"""Speech-style float models built with onnx.helper for the GNA target's accuracy tests and
bench/gna_accuracy.py: a 5-layer MLP, a TDNN (dilated Conv1D layers, then affine layers)
and a 2-layer LSTM keyword spotter."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(name: str, nodes: list, inputs: list, outputs: list, weights: dict) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              [numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _dense(rng, fan_in: int, fan_out: int) -> np.ndarray:
    return rng.normal(0.0, 1.0 / np.sqrt(fan_in), (fan_in, fan_out))


def mlp(seed: int = 0, frames: int = 1, sizes=(440, 256, 256, 256, 256, 12),
        activations=("Relu", "Sigmoid", "Tanh", "Relu")) -> onnx.ModelProto:
    """5 affine layers (Gemm, then MatMul + Add) with activations between them; 12 classes out."""
    rng = np.random.default_rng(seed)
    nodes, weights, x = [], {}, "x"
    for layer, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        weights[f"w{layer}"] = _dense(rng, fan_in, fan_out)
        weights[f"b{layer}"] = rng.normal(0.0, 0.1, fan_out)
        if layer % 2:
            nodes += [helper.make_node("MatMul", [x, f"w{layer}"], [f"m{layer}"]),
                      helper.make_node("Add", [f"m{layer}", f"b{layer}"], [f"h{layer}"])]
        else:
            nodes.append(helper.make_node("Gemm", [x, f"w{layer}", f"b{layer}"], [f"h{layer}"]))
        x = f"h{layer}"
        if layer < len(activations):
            nodes.append(helper.make_node(activations[layer], [x], [f"a{layer}"]))
            x = f"a{layer}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    return _model("mlp", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [frames, sizes[0]])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [frames, sizes[-1]])], weights)


def tdnn(seed: int = 0, features: int = 40, frames: int = 48, classes: int = 12) -> onnx.ModelProto:
    """x [1, 40, 48] -> Conv1D k3 d1 + Relu -> Conv1D k3 d2 + Sigmoid -> Conv1D k3 d3 + Tanh
    -> Flatten -> Gemm 128 + Relu -> Gemm classes."""
    rng = np.random.default_rng(seed)
    nodes, weights, x, channels, length = [], {}, "x", features, frames
    for layer, (filters, dilation, activation) in enumerate(((64, 1, "Relu"), (64, 2, "Sigmoid"), (32, 3, "Tanh"))):
        weights[f"c{layer}"] = rng.normal(0.0, 1.0 / np.sqrt(3 * channels), (filters, channels, 3))
        weights[f"cb{layer}"] = rng.normal(0.0, 0.1, filters)
        nodes += [helper.make_node("Conv", [x, f"c{layer}", f"cb{layer}"], [f"conv{layer}"], kernel_shape=[3],
                                   dilations=[dilation]),
                  helper.make_node(activation, [f"conv{layer}"], [f"t{layer}"])]
        x, channels, length = f"t{layer}", filters, length - 2 * dilation
    nodes.append(helper.make_node("Flatten", [x], ["flat"]))
    weights["w0"], weights["b0"] = _dense(rng, channels * length, 128), rng.normal(0.0, 0.1, 128)
    weights["w1"], weights["b1"] = _dense(rng, 128, classes), rng.normal(0.0, 0.1, classes)
    nodes += [helper.make_node("Gemm", ["flat", "w0", "b0"], ["fc0"]), helper.make_node("Relu", ["fc0"], ["fa0"]),
              helper.make_node("Gemm", ["fa0", "w1", "b1"], ["y"])]
    return _model("tdnn", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, features, frames])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])], weights)


def _recurrent_weights(rng, gates: int, fan_in: int, hidden: int) -> tuple[np.ndarray, ...]:
    """W [1, gates·hidden, fan_in], R [1, gates·hidden, hidden], B [1, 2·gates·hidden], uniform ±1/sqrt(hidden)."""
    bound = 1.0 / np.sqrt(hidden)
    return tuple(rng.uniform(-bound, bound, shape) for shape in
                 ((1, gates * hidden, fan_in), (1, gates * hidden, hidden), (1, 2 * gates * hidden)))


def lstm_kws(seed: int = 0, frames: int = 49, features: int = 40, hidden=(64, 64), classes: int = 12,
             head: str | None = None) -> onnx.ModelProto:
    """Keyword spotter: x [49, 1, 40] (MFCC-like frames) -> LSTM -> LSTM (last hidden state) -> Gemm classes,
    optionally followed by `head` (e.g. "Softmax")."""
    rng = np.random.default_rng(seed)
    weights = {}
    for layer, (fan_in, size) in enumerate(zip((features, hidden[0]), hidden)):
        weights[f"W{layer}"], weights[f"R{layer}"], weights[f"B{layer}"] = _recurrent_weights(rng, 4, fan_in, size)
    weights["wc"], weights["bc"] = _dense(rng, hidden[1], classes), rng.normal(0.0, 0.1, classes)
    shapes = {"axes": np.array([1]), "flat": np.array([1, hidden[1]])}
    logits = "y" if head is None else "logits"
    nodes = [helper.make_node("LSTM", ["x", "W0", "R0", "B0"], ["seq0"], hidden_size=hidden[0]),
             helper.make_node("Squeeze", ["seq0", "axes"], ["x1"]),
             helper.make_node("LSTM", ["x1", "W1", "R1", "B1"], ["", "last"], hidden_size=hidden[1]),
             helper.make_node("Reshape", ["last", "flat"], ["h"]),
             helper.make_node("Gemm", ["h", "wc", "bc"], [logits])]
    if head is not None:
        nodes.append(helper.make_node(head, [logits], ["y"]))
    model = _model("lstm_kws", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [frames, 1, features])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])], weights)
    for name, array in shapes.items():
        model.graph.initializer.append(numpy_helper.from_array(array.astype(np.int64), name))
    return model
