"""cpu Conv kernel against the ref target, bit-identical at 1 and 2 threads."""

import numpy as np
import pytest

import compiler
from compiler.driver import UnsupportedByTargetError
from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, random

# (input shape, weight shape, attributes)
CONVOLUTIONS = [
    ((1, 3, 7, 7), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 4, 9, 8), (6, 2, 3, 2), {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1]}),
    ((1, 8, 10, 10), (8, 1, 3, 3), {"group": 8, "strides": [2, 2], "auto_pad": "SAME_UPPER"}),  # depthwise
    ((1, 4, 9, 9), (8, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),  # depthwise, 2 outputs per channel
    ((1, 5, 11, 11), (3, 5, 4, 4), {"auto_pad": "SAME_LOWER"}),
    ((1, 3, 7, 7), (4, 3, 3, 3), {"auto_pad": "VALID", "dilations": [2, 2]}),
    ((1, 5, 11, 11), (3, 5, 1, 1), {}),  # pointwise: a GEMM
    ((2, 6, 5, 5), (4, 3, 1, 1), {"group": 2}),
    ((1, 6, 9, 9), (5, 6, 1, 1), {"strides": [2, 2]}),
    ((1, 3, 5, 6), (2, 3, 1, 1), {"pads": [1, 0, 0, 1]}),
    ((1, 40, 20, 20), (32, 40, 3, 3), {"pads": [1, 1, 1, 1]}),  # several staged chunks, 16-channel blocks
    ((1, 3, 33, 33), (16, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),  # a network stem
    ((1, 1, 65, 65), (1, 1, 1, 1), {"strides": [3, 3], "pads": [2, 2, 2, 2]}),  # outputs of padding only
    ((1, 3, 33), (2, 3, 5), {"strides": [3], "pads": [2, 2]}),
    ((2, 2, 600), (3, 2, 3), {"pads": [1, 1], "dilations": [2]}),  # wider than one column tile
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1]}),
    ((1, 2, 7, 6, 5), (4, 1, 2, 3, 2), {"group": 2, "strides": [2, 1, 2], "dilations": [2, 1, 1]}),
]


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("x_shape, w_shape, attrs", CONVOLUTIONS)
def test_conv(x_shape, w_shape, attrs, bias):
    x = random(x_shape)
    constants = {"w": random(w_shape, seed=1)}
    if bias:
        constants["bias"] = random(w_shape[:1], seed=2)
    assert_cpu_matches_ref(node_model("Conv", {"x": x}, constants, attrs), {"x": x})


def test_conv_float64_with_weights_as_input():
    feeds = {"x": random((2, 4, 6, 7), np.float64), "w": random((6, 2, 3, 3), np.float64, seed=1),
             "bias": random((6,), np.float64, seed=2)}
    attrs = {"group": 2, "pads": [1, 2, 0, 1], "strides": [1, 2]}
    assert_cpu_matches_ref(node_model("Conv", feeds, attrs=attrs), feeds)


def test_conv_with_four_spatial_dims_is_rejected_with_a_reason():
    x = random((1, 1, 3, 3, 3, 3))
    model = node_model("Conv", {"x": x}, {"w": random((1, 1, 2, 2, 2, 2))})
    with pytest.raises(UnsupportedByTargetError, match="4 spatial dims"):
        compiler.compile(model, target="cpu")
