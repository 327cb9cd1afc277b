"""The gpu pipeline's fusions: kiln::FusedElementwise and the FusedConv/FusedGemm/FusedMatMul
epilogues (bias, activation, residual Add) compile to gpu kernels that match the ref target
(onnx.reference running the unfused nodes)."""

import numpy as np
import onnx

import compiler
from compiler.driver import optimize
from tests.gpu.harness import assert_gpu_matches_ref, random

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def _chain(nodes: list[tuple], feeds: dict, constants: dict, outputs: list[str], opset: int = 18):
    """A model of `nodes` (op, inputs, output, attrs) wired by name, with graph outputs `outputs`."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node(op, inputs, [output], **attrs) for op, inputs, output, attrs in nodes], "chain",
        [onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in feeds.items()],
        [onnx.helper.make_value_info(name, onnx.TypeProto()) for name in outputs],
        initializer=[onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])


def _launched(model) -> list[str]:
    return [step["op_type"] for step in compiler.compile(model, target="gpu").manifest["launches"]]


def test_elementwise_chains_fuse_into_one_kernel():
    """Broadcasting float chain, an integer chain that wraps (each step rounds through its storage type),
    and a comparison feeding Where."""
    x, row = random((4, 5, 6)), random((6,), seed=1)
    i = random((3, 7), np.int8, seed=2) * 9
    feeds = {"x": x, "row": row, "i": i}
    nodes = [("Mul", ["x", "row"], "m", {}), ("Add", ["m", "half"], "a", {}), ("Tanh", ["a"], "t", {}),
             ("Sigmoid", ["t"], "s", {}), ("Greater", ["s", "half"], "g", {}), ("Where", ["g", "s", "x"], "y", {}),
             ("Mul", ["i", "i"], "ii", {}), ("Add", ["ii", "seven"], "ia", {}), ("Abs", ["ia"], "iy", {})]
    model = _chain(nodes, feeds, {"half": np.float32(0.5), "seven": np.int8(7)}, ["y", "iy"])
    assert _launched(model) == ["kiln::FusedElementwise"] * 2
    assert_gpu_matches_ref(model, feeds, tolerance=TOLERANCE)


def test_conv_epilogue_bias_activation_and_residual():
    x, w, b = random((2, 8, 9, 9)), random((8, 8, 3, 3), seed=1) * 0.2, random((8,), seed=2)
    feeds = {"x": x}
    nodes = [("Conv", ["x", "w", "b"], "c", {"pads": [1, 1, 1, 1]}), ("Relu", ["c"], "r", {}),
             ("Add", ["r", "x"], "y", {}),
             ("Conv", ["x", "w"], "c2", {"strides": [2, 2]}), ("Add", ["c2", "cb"], "c2b", {}),
             ("Clip", ["c2b", "lo", "hi"], "y2", {})]
    constants = {"w": w, "b": b, "cb": random((8, 1, 1), seed=3), "lo": np.float32(-0.3), "hi": np.float32(0.4)}
    model = _chain(nodes, feeds, constants, ["y", "y2"])
    assert _launched(model) == ["kiln::FusedConv"] * 2
    assert_gpu_matches_ref(model, feeds, tolerance=TOLERANCE)


def test_conv_with_weights_transposed_for_channel_vectors():
    """Few output positions and many channels: fuse-epilogues stores the weights in blocks of output
    channels (compiler/ops/fused_linear.py), which the gpu kernel reads as they are."""
    x, w, b = random((1, 32, 4, 4)), random((64, 32, 3, 3), seed=1) * 0.1, random((64,), seed=2)
    model = _chain([("Conv", ["x", "w", "b"], "c", {"pads": [1, 1, 1, 1]}), ("Relu", ["c"], "y", {})],
                   {"x": x}, {"w": w, "b": b}, ["y"])
    graph = optimize(model, target="gpu")
    fused = [node for node in graph.nodes() if node.op_type == "FusedConv"]
    assert len(fused) == 1 and fused[0].attrs.get("transposed_weights") == 1
    assert_gpu_matches_ref(model, {"x": x}, tolerance=TOLERANCE)


def test_gemm_and_matmul_epilogues():
    """Gemm + Sigmoid, MatMul + broadcast bias + Gelu (its Erf formula reads a value twice) + residual."""
    a, w, c = random((6, 10)), random((10, 12), seed=1), random((12,), seed=2)
    x, wm, bias = random((2, 5, 12), seed=3), random((12, 12), seed=4), random((12,), seed=5)
    feeds = {"a": a, "x": x}
    nodes = [("Gemm", ["a", "w", "c"], "g", {"alpha": 0.5}), ("Sigmoid", ["g"], "y", {}),
             ("MatMul", ["x", "wm"], "mm", {}), ("Add", ["mm", "bias"], "mb", {}),
             ("Div", ["mb", "sqrt2"], "d", {}), ("Erf", ["d"], "e", {}), ("Add", ["e", "one"], "e1", {}),
             ("Mul", ["mb", "e1"], "gm", {}), ("Mul", ["gm", "half"], "gelu", {}), ("Add", ["gelu", "x"], "y2", {})]
    constants = {"w": w, "c": c, "wm": wm, "bias": bias, "sqrt2": np.float32(np.sqrt(2)), "one": np.float32(1),
                 "half": np.float32(0.5)}
    model = _chain(nodes, feeds, constants, ["y", "y2"])
    assert sorted(_launched(model)) == ["kiln::FusedGemm", "kiln::FusedMatMul"]
    assert_gpu_matches_ref(model, feeds, tolerance=TOLERANCE)
