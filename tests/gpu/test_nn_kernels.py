"""gpu LRN, Trilu, QuantizeLinear/DequantizeLinear and ConvTranspose beside the ref target
(onnx.reference)."""

import numpy as np

from tests.gpu.harness import assert_gpu_matches_onnxruntime, assert_gpu_matches_ref, nodes_model, random

TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def test_lrn_window_sizes():
    x, x3 = random((2, 7, 4, 5)), random((1, 5, 6), seed=1)
    nodes = [("LRN", ["x"], {"size": 3}), ("LRN", ["x"], {"size": 4, "alpha": 0.01, "beta": 0.5, "bias": 2.0}),
             ("LRN", ["x"], {"size": 1}), ("LRN", ["x3"], {"size": 5, "alpha": 0.1})]
    feeds = {"x": x, "x3": x3}
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, tolerance={"rtol": 1e-5, "atol": 1e-6})


def test_trilu_upper_lower_and_run_time_k():
    x, b = random((2, 3, 4, 6)), random((5, 3), np.int32)
    feeds = {"x": x, "b": b, "k": np.array(-1, np.int64)}
    constants = {"two": np.array(2, np.int64), "far": np.array(-9, np.int64)}
    nodes = [("Trilu", ["x"], {}), ("Trilu", ["x"], {"upper": 0}), ("Trilu", ["x", "two"], {}),
             ("Trilu", ["x", "k"], {"upper": 0}), ("Trilu", ["x", "far"], {}), ("Trilu", ["b", "k"], {}),
             ("Trilu", ["b", "two"], {"upper": 0})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants), feeds, exact=True)


def test_quantize_and_dequantize_per_tensor_and_per_axis():
    x = random((2, 3, 4)) * 40
    x[0, 0, :3] = [0.5, 1.5, -2.5]  # ties round to even
    q8, i8 = random((2, 3, 4), np.uint8, seed=1), random((2, 3, 4), np.int8, seed=2)
    i32 = random((2, 3, 4), np.int32, seed=3)
    feeds = {"x": x, "q8": q8, "i8": i8, "i32": i32}
    constants = {"s": np.array(0.5, np.float32), "zu": np.array(120, np.uint8), "zi": np.array(-3, np.int8),
                 "s3": np.array([0.25, 0.5, 2.0], np.float32), "zu3": np.array([0, 128, 255], np.uint8),
                 "zi3": np.array([-128, 0, 5], np.int8), "s4": np.array([0.1, 0.2, 0.3, 0.4], np.float32),
                 "zi4": np.array([1, 2, 3, 4], np.int8), "zs": np.array(7, np.int32)}
    nodes = [("QuantizeLinear", ["x", "s", "zu"], {}), ("QuantizeLinear", ["x", "s", "zi"], {}),
             ("QuantizeLinear", ["x", "s"], {}), ("QuantizeLinear", ["x", "s3", "zu3"], {"axis": 1}),
             ("QuantizeLinear", ["x", "s4", "zi4"], {"axis": -1}),
             ("DequantizeLinear", ["q8", "s", "zu"], {}), ("DequantizeLinear", ["i8", "s3", "zi3"], {"axis": 1}),
             ("DequantizeLinear", ["i8", "s4"], {"axis": 2}), ("DequantizeLinear", ["i32", "s"], {}),
             ("DequantizeLinear", ["i8", "s4", "zi4"], {"axis": 2})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants, opset=19), feeds, tolerance={"rtol": 1e-6, "atol": 0})


def test_conv_transpose_strides_pads_groups_and_output_shape():
    x, w, b = random((2, 4, 5, 6)), random((4, 3, 3, 2), seed=1), random((6,), seed=2)
    x1, w1 = random((1, 2, 7), seed=3), random((2, 3, 4), seed=4)
    x3, w3 = random((1, 2, 3, 4, 3), seed=5), random((2, 2, 2, 3, 2), seed=6)
    feeds = {"x": x, "w": w, "b": b, "x1": x1, "w1": w1, "x3": x3, "w3": w3}
    nodes = [("ConvTranspose", ["x", "w"], {}),
             ("ConvTranspose", ["x", "w"], {"strides": [2, 2], "dilations": [2, 1], "output_padding": [1, 1]}),
             ("ConvTranspose", ["x", "w"], {"strides": [2, 2], "output_shape": [12, 13]}),
             ("ConvTranspose", ["x", "w"], {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
             ("ConvTranspose", ["x", "w"], {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
             ("ConvTranspose", ["x1", "w1"], {"strides": [3], "pads": [2, 1]}),
             ("ConvTranspose", ["x3", "w3"], {"strides": [2, 1, 2], "pads": [1, 0, 0, 0, 1, 1]})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, tolerance=TOLERANCE)


def test_grouped_conv_transpose_with_bias():
    """onnx.reference cannot run grouped ConvTranspose: onnxruntime is its oracle."""
    x, w, b = random((2, 4, 5, 6)), random((4, 3, 3, 2), seed=1), random((6,), seed=2)
    feeds = {"x": x}
    model = nodes_model([("ConvTranspose", ["x", "w", "b"], {"group": 2, "strides": [2, 3], "pads": [1, 0, 0, 1]})],
                        feeds, {"w": w, "b": b})
    assert_gpu_matches_onnxruntime(model, feeds, tolerance=TOLERANCE)
