"""cpu Conv/Gemm/MatMul register-tile kernels and their fused epilogues (kiln::FusedConv/FusedGemm/
FusedMatMul) against the ref target, bit-identical at 1 and 2 threads.

Sizes are odd on purpose: they leave partial register tiles (rows and vector columns), partial
k chunks (16) and several k blocks, channel chunks and work items.
"""

import math

import numpy as np
import pytest
from onnx import helper, numpy_helper

import compiler
import runtime
from compiler.driver import optimize
from tests.codegen.kernel_harness import TOLERANCE, assert_cpu_matches_ref, node_model, random

# (input shape, weight shape, attributes)
CONVOLUTIONS = [
    ((1, 5, 11, 13), (7, 5, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 6, 9, 8), (9, 2, 3, 2), {"group": 3, "strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1]}),
    ((1, 8, 10, 10), (8, 1, 3, 3), {"group": 8, "strides": [2, 2], "auto_pad": "SAME_UPPER"}),  # depthwise
    ((1, 37, 6, 7), (19, 37, 1, 1), {}),  # pointwise: a GEMM over the flattened positions
    ((1, 21, 9, 11), (23, 21, 1, 1), {"strides": [2, 3]}),  # strided pointwise: tabled column offsets
    ((1, 3, 29, 29), (20, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),  # a network stem
    ((1, 70, 7, 7), (33, 70, 3, 3), {"pads": [1, 1, 1, 1]}),  # several staged chunks
    ((1, 3, 33), (5, 3, 5), {"strides": [3], "pads": [2, 2]}),
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1]}),
]
ACTIVATIONS = ["Relu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "Clip"]


def _model(nodes, inputs: dict, constants: dict, opset: int = 17):
    graph = helper.make_graph(
        nodes, "fused", [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                         for name, v in inputs.items()],
        [helper.make_value_info("y", helper.TypeProto())],
        initializer=[numpy_helper.from_array(np.asarray(v), name) for name, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _activation(name: str, source: str, output: str) -> list:
    if name == "Clip":
        return [helper.make_node("Clip", [source, "low", "high"], [output])]
    attrs = {"alpha": 0.3} if name == "LeakyRelu" else {}
    return [helper.make_node(name, [source], [output], **attrs)]


def _gelu(source: str, output: str) -> list:
    """Gelu's Erf formula, as exporters write it: x * 0.5 * (1 + erf(x / sqrt 2))."""
    return [helper.make_node("Div", [source, "root2"], ["g.scaled"]), helper.make_node("Erf", ["g.scaled"], ["g.erf"]),
            helper.make_node("Add", ["g.erf", "one"], ["g.shifted"]),
            helper.make_node("Mul", [source, "g.shifted"], ["g.gated"]),
            helper.make_node("Mul", ["g.gated", "half"], [output])]


SCALARS = {"low": np.float32(-0.5), "high": np.float32(0.75), "root2": np.float32(1.4142135),
           "one": np.float32(1.0), "half": np.float32(0.5)}


def _check_fused(model, feeds: dict, op_type: str, fused_count: int) -> None:
    """The graph holds `op_type` fused nodes taking `fused_count` nodes; cpu matches ref, and the unfused
    cpu graph (fuse-epilogues off)."""
    fused = [n for n in optimize(model, "cpu").nodes() if n.op_type == op_type]
    assert [len(n.attrs["fused_nodes"]) for n in fused] == [fused_count]
    actual = assert_cpu_matches_ref(model, feeds)
    unfused = runtime.load(compiler.compile(model, target="cpu", disable=["fuse-epilogues"])).infer(feeds)
    for name, value in unfused.items():
        np.testing.assert_allclose(actual[name], value, **TOLERANCE, err_msg=name)


@pytest.mark.parametrize("activation", ACTIVATIONS + ["Gelu"])
@pytest.mark.parametrize("x_shape, w_shape, attrs", CONVOLUTIONS)
def test_conv_with_bias_residual_and_activation(x_shape, w_shape, attrs, activation):
    x = random(x_shape)
    conv_only = node_model("Conv", {"x": x}, {"w": random(w_shape, seed=1)}, attrs)
    out_shape = runtime.load(compiler.compile(conv_only, target="ref")).infer({"x": x})["y"].shape
    bias_shape = (w_shape[0],) + (1,) * (len(x_shape) - 2)
    feeds = {"x": x, "r": random(out_shape, seed=3)}
    constants = {"w": random(w_shape, seed=1), "bias": random(bias_shape, seed=2), **SCALARS}
    tail = _gelu("s", "y") if activation == "Gelu" else _activation(activation, "s", "y")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], **attrs), helper.make_node("Add", ["c", "bias"], ["b"]),
             helper.make_node("Add", ["b", "r"], ["s"]), *tail]
    # the bias Add folds into the Conv's bias (fold-batch-norm); the residual and the activation fuse
    _check_fused(_model(nodes, feeds, constants), feeds, "FusedConv", 2 + len(tail))


# small outputs and many channels: the channel-vector form, its weights transposed at compile time
CHANNEL_VECTORS = [
    ((1, 40, 7, 7), (64, 40, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 20, 9, 7), (96, 20, 3, 2), {"pads": [0, 1, 1, 0], "strides": [2, 1]}),
    ((1, 33, 13, 13), (80, 33, 1, 1), {"strides": [2, 2]}),  # 49 positions, 7 x 7
    ((1, 17, 6, 5), (1024, 17, 1, 1), {}),  # an unstrided 1x1 conv with wide channel blocks
    ((1, 200, 7, 7), (64, 200, 1, 1), {}),  # 1x1 read in place: chunks of 80, 80, 40 input channels
    ((2, 90, 7, 7), (64, 90, 1, 1), {}),  # ... one input channel a step (16 does not divide 90), chunks 83, 7
    ((1, 48, 7, 7), (104, 48, 3, 3), {"pads": [1, 1, 1, 1]}),  # 104 channels: zero weights pad the last block
    ((1, 256, 9, 9), (328, 256, 1, 1), {}),  # ... read in place
    ((1, 70, 14, 14), (64, 70, 1, 1), {}),  # ... 2 channel blocks: its 14 rows split 5, 5, 4 between items
    ((1, 5, 40), (128, 5, 3), {"pads": [1, 1], "dilations": [2]}),
    # larger images: blocks of CHANNEL_VECTOR_ROWS rows, each staging its own input rows
    ((1, 16, 42, 37), (64, 16, 3, 3), {"pads": [1, 1, 1, 1]}),  # 42 rows: the last block holds 2
    ((2, 3, 75, 70), (64, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),  # a network stem
]


@pytest.mark.parametrize("x_shape, w_shape, attrs", CHANNEL_VECTORS)
def test_channel_vector_conv_with_bias_and_relu(x_shape, w_shape, attrs):
    x = random(x_shape)
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, {"x": x}, {"w": random(w_shape, seed=1), "bias": random(w_shape[:1], seed=2)})
    (fused,) = [n for n in optimize(model, "cpu").nodes() if n.op_type == "FusedConv"]
    assert fused.attrs["transposed_weights"] == 1 and fused.attrs["kernel_shape"] == list(w_shape[2:])
    assert fused.attrs["out_channels"] == w_shape[0]
    _check_fused(model, {"x": x}, "FusedConv", 2)


def test_larger_images_take_the_channel_vector_form_only_for_a_long_reduction():
    """Past CHANNEL_VECTOR_POSITIONS outputs a conv needs CHANNEL_VECTOR_TERMS input channels x taps (a C=3
    3x3 stem ran slower in it), and a pointwise conv stays a GEMM."""
    from compiler.codegen.llvm.kernels.conv_geometry import ConvGeometry
    from compiler.codegen.llvm.kernels.convolution import CHANNEL_VECTOR_ROWS, channel_vector_form, channel_vector_plan

    def geometry(channels, kernel):
        return ConvGeometry("float32", 1, channels, 64, 1, (56, 56), (kernel, kernel), (56, 56), (1, 1), (1, 1),
                            (kernel // 2, kernel // 2))

    assert channel_vector_form(geometry(64, 3)) and channel_vector_plan(geometry(64, 3)).rows == CHANNEL_VECTOR_ROWS
    assert not channel_vector_form(geometry(3, 3))
    assert not channel_vector_form(geometry(64, 1))


def test_channel_vector_conv_float64():
    """float64 vectors hold 8 lanes: 8 x 8 squares of the accumulators are transposed for the store."""
    x = random((1, 40, 7, 7), np.float64)
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, {"x": x}, {"w": random((68, 40, 1, 1), np.float64, seed=1),
                                     "bias": random((68,), np.float64, seed=2)})
    (fused,) = [n for n in optimize(model, "cpu").nodes() if n.op_type == "FusedConv"]
    assert fused.attrs["transposed_weights"] == 1 and fused.attrs["out_channels"] == 68
    _check_fused(model, {"x": x}, "FusedConv", 2)


def test_a_pointwise_conv_with_few_channel_blocks_splits_its_rows_between_items():
    """Inception's 1x1 conv from 576 to 160 channels on 14 x 14: 5 channel blocks would leave 2 threads a
    3 : 2 share, so its rows split too (the CHANNEL_VECTORS cases above run split plans against ref)."""
    from compiler.codegen.llvm.kernels.conv_geometry import ConvGeometry
    from compiler.codegen.llvm.kernels.convolution import PARALLEL_ITEMS, channel_vector_plan

    def plan(channels, size, kernel, pads=(0, 0)):
        return channel_vector_plan(ConvGeometry("float32", 1, 576, channels, 1, (size, size), (kernel, kernel),
                                                (size, size), (1, 1), (1, 1), pads))

    split = plan(160, 14, 1)
    assert split.reads_input and split.rows < 14 and math.prod(split.item_dims) >= PARALLEL_ITEMS
    assert plan(256, 14, 1).rows == 14  # 8 blocks of 32 channels
    assert plan(160, 14, 3, (1, 1)).rows == 14  # staged: every item would stage its rows again


def test_conv_float64_relu_then_residual():
    """An Add after the activation is part of the epilogue too; float64 vectors hold half the lanes."""
    x, r = random((1, 6, 9, 9), np.float64), random((1, 10, 9, 9), np.float64, seed=3)
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["a"]), helper.make_node("Add", ["r", "a"], ["y"])]
    constants = {"w": random((10, 6, 3, 3), np.float64, seed=1), "bias": random((10,), np.float64, seed=2)}
    _check_fused(_model(nodes, {"x": x, "r": r}, constants), {"x": x, "r": r}, "FusedConv", 3)


# (A shape, B shape): odd M, N, K; several k blocks; batch broadcasting; a single row
MATMULS = [((7, 33), (33, 65)), ((65, 700), (700, 19)), ((2, 3, 7, 9), (3, 9, 20)), ((1, 300), (300, 70))]


@pytest.mark.parametrize("a_shape, b_shape", MATMULS)
def test_matmul_with_bias_and_gelu(a_shape, b_shape):
    feeds = {"a": random(a_shape, seed=1)}
    constants = {"w": random(b_shape, seed=2), "bias": random(b_shape[-1:], seed=3), **SCALARS}
    nodes = [helper.make_node("MatMul", ["a", "w"], ["m"]), helper.make_node("Add", ["m", "bias"], ["s"]),
             *_gelu("s", "y")]
    _check_fused(_model(nodes, feeds, constants), feeds, "FusedMatMul", 7)


# (A shape, B shape, C shape, attributes): transposes read B by gathers
GEMMS = [((7, 33), (65, 33), (65,), {"transB": 1, "alpha": 0.5, "beta": 2.0}),
         ((33, 7), (33, 65), (7, 1), {"transA": 1}),
         ((1, 300), (270, 300), (270,), {"transB": 1})]


@pytest.mark.parametrize("a_shape, b_shape, c_shape, attrs", GEMMS)
@pytest.mark.parametrize("activation", ["Relu", "Clip", "LeakyRelu"])
def test_gemm_with_activation(a_shape, b_shape, c_shape, attrs, activation):
    feeds = {"a": random(a_shape, seed=1)}
    constants = {"w": random(b_shape, seed=2), "c": random(c_shape, seed=3), **SCALARS}
    nodes = [helper.make_node("Gemm", ["a", "w", "c"], ["g"], **attrs), *_activation(activation, "g", "y")]
    _check_fused(_model(nodes, feeds, constants), feeds, "FusedGemm", 2)


def test_residual_broadcast_along_rows_and_columns():
    """Operands broadcast over any output dims: per-column, per-row and per-batch terms."""
    feeds = {"a": random((2, 5, 40), seed=1), "rows": random((2, 5, 1), seed=4), "columns": random((1, 21), seed=3)}
    constants = {"w": random((40, 21), seed=2)}
    nodes = [helper.make_node("MatMul", ["a", "w"], ["m"]), helper.make_node("Mul", ["m", "columns"], ["s"]),
             helper.make_node("Sub", ["rows", "s"], ["y"])]
    _check_fused(_model(nodes, feeds, constants), feeds, "FusedMatMul", 3)
