"""cpu MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool kernels against the ref target,
at 1 and 2 threads."""

import numpy as np
import pytest

import compiler
from compiler.driver import UnsupportedByTargetError
from compiler.ops.pool_geometry import PoolDim, Window
from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, random, run_cpu

# (input shape, attributes). ceil_mode cases keep the window overhang below 2 elements: past
# that, onnx.reference shifts its windows (it splits the extra padding over both ends).
WINDOWS = [
    ((2, 3, 7, 9), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 2, 7, 9), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 8, 7), {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [2, 1], "pads": [1, 0, 2, 1]}),
    ((1, 3, 6, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 6, 7), {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
    ((2, 2, 6, 7), {"kernel_shape": [3, 2], "strides": [2, 3], "auto_pad": "VALID"}),
    ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 2]}),
    ((1, 2, 4, 5, 6), {"kernel_shape": [2, 2, 3], "strides": [2, 2, 2], "pads": [0, 1, 1, 0, 0, 1]}),
    ((1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [3, 3], "pads": [1, 1, 0, 0], "ceil_mode": 1}),
    # rows of several vectors of outputs, the last one part full
    ((1, 2, 5, 75), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 3, 40), {"kernel_shape": [2, 4], "strides": [1, 1], "pads": [0, 2, 1, 1], "dilations": [1, 2]}),
    ((1, 2, 3, 70), {"kernel_shape": [1, 5], "strides": [1, 5], "ceil_mode": 1}),
    # the plane form: stride 1, rows as long as the input's, a small plane (the first case above too)
    ((1, 4, 14, 14), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 2, 28, 28), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 2, 6, 7), {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 2, 0, 2]}),
    ((2, 3, 11), {"kernel_shape": [3], "dilations": [2]}),
]


# Pools over block-channels' layout [N, C / c, H, W, c]: a window of one lane along c (the channel-vector form)
BLOCKED_WINDOWS = [
    ((1, 2, 9, 11, 16), {"kernel_shape": [3, 3, 1], "strides": [2, 2, 1], "pads": [1, 1, 0, 1, 1, 0]}),
    ((2, 1, 8, 7, 16), {"kernel_shape": [3, 3, 1], "strides": [2, 2, 1], "ceil_mode": 1}),  # SqueezeNet's overhang
    ((1, 2, 7, 9, 8), {"kernel_shape": [2, 3, 1], "dilations": [2, 1, 1], "pads": [1, 0, 0, 2, 0, 0]}),
    ((1, 3, 5, 6, 16), {"kernel_shape": [3, 3, 1]}),  # stride 1 (onnx.reference fails on 3-D ones with pads)
]


@pytest.mark.parametrize("shape, attrs", WINDOWS + BLOCKED_WINDOWS)
def test_max_pool(shape, attrs):
    x = random(shape)
    assert_cpu_matches_ref(node_model("MaxPool", {"x": x}, attrs=attrs), {"x": x}, exact=True)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("shape, attrs", WINDOWS + BLOCKED_WINDOWS)
def test_average_pool(shape, attrs, count_include_pad):
    x = random(shape)
    model = node_model("AveragePool", {"x": x}, attrs={**attrs, "count_include_pad": count_include_pad}, opset=19)
    assert_cpu_matches_ref(model, {"x": x})


def test_max_pool_propagates_nan():
    """A window holding a NaN gives NaN, as numpy's max does (onnx.reference skips NaNs; ONNX Runtime
    depends on where the NaN sits), so the oracle is numpy over each window, padding as -inf."""
    x = random((1, 2, 6, 40))
    x[0, 0, 2, 17] = x[0, 1, 5, 39] = np.nan
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)], constant_values=-np.inf)
    expected = np.array([[[[padded[n, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(20)]
                           for i in range(3)] for c in range(2)] for n in range(1)], np.float32)
    np.testing.assert_array_equal(run_cpu(node_model("MaxPool", {"x": x}, attrs=attrs), {"x": x})["y"], expected)


def test_blocked_max_pool_propagates_nan_wherever_it_sits_in_the_window():
    """The channel-vector form takes one vmaxps a tap and remembers NaNs apart: a NaN first, in the middle
    or last in a window (or in a lane of its own) gives NaN in that lane only."""
    x = random((1, 2, 7, 9, 16))
    x[0, 0, 0, 0, 3] = x[0, 0, 3, 4, 5] = x[0, 1, 6, 8, 0] = x[0, 1, 2, 2, 15] = np.nan
    attrs = {"kernel_shape": [3, 3, 1], "strides": [2, 2, 1], "pads": [1, 1, 0, 1, 1, 0]}
    padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
    expected = np.stack([np.stack([padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
                                   for j in range(5)], axis=2) for i in range(4)], axis=2)
    got = run_cpu(node_model("MaxPool", {"x": x}, attrs=attrs), {"x": x})["y"]
    assert np.isnan(expected).sum() == 5  # (windows overlap: a NaN on a shared row or column reaches two)
    np.testing.assert_array_equal(got, expected)


def test_float64_pools():
    x = random((2, 3, 6, 5), np.float64)
    attrs = {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [1, 1, 0, 1]}
    assert_cpu_matches_ref(node_model("MaxPool", {"x": x}, attrs=attrs), {"x": x}, exact=True)
    assert_cpu_matches_ref(node_model("AveragePool", {"x": x}, attrs=attrs), {"x": x})


def test_windows_skip_padding_and_count_it_only_when_asked():
    dim = PoolDim(size_in=5, size_out=3, kernel=3, stride=2, dilation=1, pad_begin=1, pad_end=1)
    assert dim.windows(count_padding=False) == [Window(0, 2, 2), Window(1, 3, 3), Window(3, 2, 2)]
    assert [w.divisor for w in dim.windows(count_padding=True)] == [3, 3, 3]
    assert dim.tap_ranges() == [(1, 3), (0, 3), (0, 2)]  # the outputs whose window holds each tap in the input
    ceil_overhang = PoolDim(size_in=4, size_out=2, kernel=3, stride=2, dilation=1, pad_begin=0, pad_end=0)
    assert ceil_overhang.windows(count_padding=True) == [Window(0, 3, 3), Window(2, 2, 2)]


def test_windows_past_the_input_are_rejected():
    """onnx shape inference gives 4 outputs per dim here; ONNX Runtime and onnx.reference give 3."""
    x = random((1, 2, 8, 8))
    attrs = {"kernel_shape": [3, 3], "strides": [3, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1}
    with pytest.raises(UnsupportedByTargetError, match="read no input element"):
        compiler.compile(node_model("MaxPool", {"x": x}, attrs=attrs), target="cpu")


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape, dtype", [((2, 3, 5, 7), np.float32), ((1, 4, 1, 1), np.float32),
                                          ((2, 3, 9), np.float64), ((1, 2, 3, 4, 5), np.float32)])
def test_global_pools(op, shape, dtype):
    x = random(shape, dtype)
    assert_cpu_matches_ref(node_model(op, {"x": x}), {"x": x}, exact=op == "GlobalMaxPool")


def test_small_stride_1_planes_take_the_plane_form():
    from compiler.codegen.llvm.kernels.pooling import _plane_form, _pool_items
    from compiler.driver import optimize

    def items(shape, attrs, op="MaxPool"):
        model = optimize(node_model(op, {"x": random(shape)}, attrs=attrs), "cpu")
        node = next(n for n in model.nodes() if n.op_type == op)
        return _plane_form(model, node) is not None, _pool_items(model, node)

    same = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    assert items((1, 576, 14, 14), same, "AveragePool") == (True, 576)
    assert items((1, 64, 56, 56), same) == (False, 64 * 56)  # a large plane: a row per item
    assert items((1, 8, 14, 14), {**same, "strides": [2, 2]}) == (False, 8 * 7)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("shape, attrs", BLOCKED_WINDOWS)
def test_blocked_pools_take_the_channel_vector_form(shape, attrs, op):
    from compiler.codegen.llvm.kernels.pooling import _channel_vector_form, _pool_items
    from compiler.driver import optimize

    model = optimize(node_model(op, {"x": random(shape)}, attrs=attrs, opset=19), "cpu")
    node = next(n for n in model.nodes() if n.op_type == op)
    assert _channel_vector_form(model, node) is not None
    assert _pool_items(model, node) == np.prod(node.outputs[0].shape[:-2])  # an item per row of pixels
