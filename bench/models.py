"""Benchmark models the project builds itself with onnx.helper (seeded weights, nothing downloaded).

- `mobilenet_v2()`: MobileNetV2 1.0 at 224x224 as exporters write it (Conv + BatchNormalization +
  Clip(0, 6) blocks, inverted residuals, global average pool, Gemm classifier).
- `bert_encoder()`: a BERT-style encoder (token + position embeddings, LayerNormalization,
  multi-head self-attention with an additive mask, Gelu in its Erf form), 4 layers, hidden 256,
  4 heads, sequence 128 by default; `dynamic=True` leaves batch and sequence symbolic.

Each returns a `BenchModel`: the ModelProto and a function that draws seeded example inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from onnx import ModelProto, TensorProto, helper, numpy_helper

OPSET = 17


@dataclass(frozen=True)
class BenchModel:
    name: str
    model: ModelProto
    make_inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]


class _GraphBuilder:
    """Collects nodes and seeded initializers; names every node and tensor uniquely."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, stem: str, value: np.ndarray) -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, stem: str, shape: tuple[int, ...], fan_in: int) -> str:
        scale = np.sqrt(2.0 / fan_in)
        return self.constant(stem, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, **attributes) -> str:
        output = self.fresh(stem or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def model(self, name: str, inputs: list, output: str, output_shape: list) -> ModelProto:
        graph = helper.make_graph(
            self.nodes, name, inputs,
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)],
            initializer=self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


# --- MobileNetV2 ----------------------------------------------------------------------------------

# (expansion t, output channels c, repeats n, first stride s), from the MobileNetV2 paper.
_INVERTED_RESIDUALS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(b: _GraphBuilder, x: str, channels_in: int, channels_out: int, kernel: int,
             stride: int = 1, group: int = 1, relu6: bool = True) -> str:
    weight = b.weight("conv_w", (channels_out, channels_in // group, kernel, kernel),
                      fan_in=channels_in // group * kernel * kernel)
    pad = kernel // 2
    y = b.op("Conv", [x, weight], "conv", kernel_shape=[kernel, kernel], strides=[stride, stride],
             pads=[pad] * 4, group=group)
    scale = b.constant("bn_scale", b.rng.uniform(0.5, 1.5, channels_out).astype(np.float32))
    shift = b.constant("bn_shift", b.rng.uniform(-0.1, 0.1, channels_out).astype(np.float32))
    mean = b.constant("bn_mean", b.rng.uniform(-0.1, 0.1, channels_out).astype(np.float32))
    variance = b.constant("bn_var", b.rng.uniform(0.5, 1.5, channels_out).astype(np.float32))
    y = b.op("BatchNormalization", [y, scale, shift, mean, variance], "bn", epsilon=1e-5)
    if relu6:
        low = b.constant("clip_min", np.array(0.0, np.float32))
        high = b.constant("clip_max", np.array(6.0, np.float32))
        y = b.op("Clip", [y, low, high], "relu6")
    return y


def mobilenet_v2(batch: int = 1, resolution: int = 224, classes: int = 1000, seed: int = 0) -> BenchModel:
    b = _GraphBuilder(seed)
    x = _conv_bn(b, "input", 3, 32, 3, stride=2)
    channels = 32
    for expansion, out_channels, repeats, first_stride in _INVERTED_RESIDUALS:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            hidden = channels * expansion
            y = x if expansion == 1 else _conv_bn(b, x, channels, hidden, 1)
            y = _conv_bn(b, y, hidden, hidden, 3, stride=stride, group=hidden)
            y = _conv_bn(b, y, hidden, out_channels, 1, relu6=False)
            x = b.op("Add", [x, y], "residual") if stride == 1 and channels == out_channels else y
            channels = out_channels
    x = _conv_bn(b, x, channels, 1280, 1)
    x = b.op("GlobalAveragePool", [x], "pool")
    x = b.op("Flatten", [x], "flatten", axis=1)
    weight = b.weight("fc_w", (classes, 1280), fan_in=1280)
    bias = b.constant("fc_b", np.zeros(classes, np.float32))
    logits = b.op("Gemm", [x, weight, bias], "logits", transB=1)
    model = b.model("mobilenet_v2", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [batch, 3, resolution, resolution])], logits, [batch, classes])

    def make_inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"input": rng.standard_normal((batch, 3, resolution, resolution)).astype(np.float32)}

    return BenchModel("mobilenet_v2", model, make_inputs)


# --- BERT-style encoder ---------------------------------------------------------------------------

def _linear(b: _GraphBuilder, x: str, width_in: int, width_out: int) -> str:
    weight = b.weight("dense_w", (width_in, width_out), fan_in=width_in)
    bias = b.constant("dense_b", (b.rng.standard_normal(width_out) * 0.02).astype(np.float32))
    return b.op("Add", [b.op("MatMul", [x, weight], "dense"), bias], "dense_bias")


def _layer_norm(b: _GraphBuilder, x: str, hidden: int) -> str:
    scale = b.constant("ln_scale", np.ones(hidden, np.float32))
    shift = b.constant("ln_shift", np.zeros(hidden, np.float32))
    return b.op("LayerNormalization", [x, scale, shift], "layer_norm", axis=-1, epsilon=1e-12)


def _gelu_erf(b: _GraphBuilder, x: str) -> str:
    """0.5 * x * (1 + erf(x / sqrt(2))), the form PyTorch's exporter writes."""
    scaled = b.op("Div", [x, b.constant("sqrt2", np.array(np.sqrt(2.0), np.float32))], "gelu_div")
    erf = b.op("Add", [b.op("Erf", [scaled], "gelu_erf"), b.constant("one", np.array(1.0, np.float32))],
               "gelu_add")
    return b.op("Mul", [b.op("Mul", [x, erf], "gelu_mul"), b.constant("half", np.array(0.5, np.float32))],
                "gelu")


def _split_heads(b: _GraphBuilder, x: str, heads: int, head_size: int, key: bool = False) -> str:
    shape = b.constant("heads_shape", np.array([0, 0, heads, head_size], np.int64))
    y = b.op("Reshape", [x, shape], "split_heads")
    return b.op("Transpose", [y], "heads", perm=[0, 2, 3, 1] if key else [0, 2, 1, 3])


def _self_attention(b: _GraphBuilder, x: str, mask: str, hidden: int, heads: int) -> str:
    head_size = hidden // heads
    query = _split_heads(b, _linear(b, x, hidden, hidden), heads, head_size)
    key = _split_heads(b, _linear(b, x, hidden, hidden), heads, head_size, key=True)
    value = _split_heads(b, _linear(b, x, hidden, hidden), heads, head_size)
    scores = b.op("MatMul", [query, key], "scores")
    scores = b.op("Div", [scores, b.constant("scale", np.array(np.sqrt(head_size), np.float32))], "scaled")
    probabilities = b.op("Softmax", [b.op("Add", [scores, mask], "masked")], "probabilities", axis=-1)
    context = b.op("Transpose", [b.op("MatMul", [probabilities, value], "context")], "merge", perm=[0, 2, 1, 3])
    context = b.op("Reshape", [context, b.constant("hidden_shape", np.array([0, 0, hidden], np.int64))],
                   "merged")
    return _linear(b, context, hidden, hidden)


def bert_encoder(batch: int = 1, sequence: int = 128, layers: int = 4, hidden: int = 256, heads: int = 4,
                 vocabulary: int = 30522, max_positions: int = 512, dynamic: bool = False,
                 seed: int = 0) -> BenchModel:
    b = _GraphBuilder(seed)
    words = b.constant("word_embeddings", (b.rng.standard_normal((vocabulary, hidden)) * 0.02).astype(np.float32))
    positions_table = b.constant("position_embeddings",
                                 (b.rng.standard_normal((max_positions, hidden)) * 0.02).astype(np.float32))
    length = b.op("Gather", [b.op("Shape", ["input_ids"], "ids_shape"), b.constant("axis1", np.array(1, np.int64))],
                  "length")
    positions = b.op("Range", [b.constant("zero", np.array(0, np.int64)), length,
                               b.constant("step", np.array(1, np.int64))], "positions")
    x = b.op("Add", [b.op("Gather", [words, "input_ids"], "tokens"),
                     b.op("Gather", [positions_table, positions], "positions_embedded")], "embedded")
    x = _layer_norm(b, x, hidden)
    mask = b.op("Unsqueeze", ["attention_mask", b.constant("mask_axes", np.array([1, 2], np.int64))], "mask4d")
    mask = b.op("Mul", [b.op("Sub", [b.constant("one", np.array(1.0, np.float32)), mask], "mask_inverted"),
                        b.constant("mask_value", np.array(-10000.0, np.float32))], "mask_bias")
    for _ in range(layers):
        x = _layer_norm(b, b.op("Add", [x, _self_attention(b, x, mask, hidden, heads)], "attention_residual"),
                        hidden)
        feed_forward = _linear(b, _gelu_erf(b, _linear(b, x, hidden, 4 * hidden)), 4 * hidden, hidden)
        x = _layer_norm(b, b.op("Add", [x, feed_forward], "ffn_residual"), hidden)
    dims = ["batch", "sequence"] if dynamic else [batch, sequence]
    model = b.model("bert_encoder", [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
        helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, dims)], x, dims + [hidden])

    def make_inputs(rng: np.random.Generator, batch: int = batch, sequence: int = sequence) -> dict[str, np.ndarray]:
        mask = np.ones((batch, sequence), np.float32)
        mask[:, sequence - sequence // 8:] = 0.0
        return {"input_ids": rng.integers(0, vocabulary, (batch, sequence), dtype=np.int64), "attention_mask": mask}

    return BenchModel("bert_encoder", model, make_inputs)
