"""cpu ConvTranspose, DeformConv, LpPool, MaxUnpool and MaxPool (Indices, int8/uint8) kernels against
the ref target or, where onnx.reference is wrong, ONNX Runtime; at 1 and 2 threads."""

import numpy as np
import onnxruntime
import pytest

import compiler
from compiler.codegen.llvm.kernels.conv_transpose import TransposeDim
from compiler.driver import UnsupportedByTargetError
from tests.codegen.kernel_harness import TOLERANCE, assert_cpu_matches_ref, node_model, random, run_cpu


def assert_cpu_matches_onnxruntime(model, feeds: dict, exact: bool = False) -> None:
    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)
    actual = run_cpu(model, feeds)
    for name, want in zip([output.name for output in model.graph.output], expected):
        assert actual[name].shape == want.shape and actual[name].dtype == want.dtype, name
        if exact:
            np.testing.assert_array_equal(actual[name], want, err_msg=name)
        else:
            np.testing.assert_allclose(actual[name], want, **TOLERANCE, err_msg=name)


# ----- ConvTranspose -----------------------------------------------------------------------------

# (input shape, weight shape, attributes): one group, where onnx.reference is right
TRANSPOSES = [
    ((1, 2, 3, 3), (2, 3, 3, 3), {}),
    ((2, 2, 4, 5), (2, 3, 3, 2), {"strides": [2, 3], "pads": [1, 0, 2, 1]}),
    ((1, 3, 6, 5), (3, 2, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 5), (2, 2, 3), {"strides": [3], "dilations": [2], "pads": [1, 2], "output_padding": [1]}),
    ((2, 3, 9), (3, 4, 5), {"strides": [4], "dilations": [3]}),
    ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), {"strides": [2, 1, 2], "pads": [0, 1, 0, 1, 0, 1]}),
    ((1, 1, 3, 3), (1, 1, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 1, 3, 3), (1, 1, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 4, 3), (2, 3, 3, 2), {"strides": [2, 3], "output_padding": [1, 2]}),
    ((1, 1, 3, 3), (1, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),  # larger than it reaches
    ((1, 2, 4, 4), (2, 2, 3, 3), {"dilations": [2, 2], "strides": [1, 2], "pads": [3, 2, 3, 0]}),  # pads past taps
]


@pytest.mark.parametrize("x_shape, w_shape, attrs", TRANSPOSES)
def test_conv_transpose(x_shape, w_shape, attrs):
    x = random(x_shape)
    constants = {"w": random(w_shape, seed=1), "b": random((w_shape[1] * attrs.get("group", 1),), seed=2)}
    assert_cpu_matches_ref(node_model("ConvTranspose", {"x": x}, constants, attrs=attrs), {"x": x})


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((2, 4, 5, 6), (4, 3, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 1, 0, 1]}),
    ((1, 6, 7), (6, 5, 4), {"group": 3, "strides": [2], "dilations": [3]}),
    ((1, 4, 3, 4, 3), (4, 2, 3, 2, 2), {"group": 2, "strides": [1, 2, 2]}),
    ((1, 4, 2, 2), (4, 1, 2, 2), {"group": 4}),
])
def test_grouped_conv_transpose_matches_onnxruntime(x_shape, w_shape, attrs):
    """onnx.reference mixes up output channels across groups (and adds bias[0] to every group)."""
    x = random(x_shape)
    constants = {"w": random(w_shape, seed=1), "b": random((w_shape[1] * attrs["group"],), seed=2)}
    assert_cpu_matches_onnxruntime(node_model("ConvTranspose", {"x": x}, constants, attrs=attrs), {"x": x})


def test_float64_conv_transpose_fed_weights():
    x, w = random((1, 3, 5, 4), np.float64), random((3, 2, 3, 3), np.float64, seed=1)
    model = node_model("ConvTranspose", {"x": x, "w": w}, attrs={"strides": [2, 2], "pads": [1, 0, 0, 1]})
    assert_cpu_matches_ref(model, {"x": x, "w": w})


def test_conv_transpose_tables():
    dim = TransposeDim(size_in=3, size_out=7, kernel=4, stride=2, dilation=1, pad_begin=1)
    # output o reads input (o + 1 - k) / 2 through tap k: o=0 gets (k=1, i=0); o=1 gets (0, 1), (2, 0)
    assert dim.output_taps()[:3] == [(1, 0, 1), (0, 1, 2), (1, 1, 2)]
    assert dim.phase_taps() == [[(1, 0), (3, -1)], [(0, 1), (2, 0)]]
    assert (dim.first_shift, dim.staged, dim.staged_inputs) == (-1, 10, (1, 4))


# ----- DeformConv -------------------------------------------------------------------------------

def _deform_feeds(x_shape, w_shape, attrs, mask=True, bias=True, spread=2.0):
    rng = np.random.default_rng(0)
    (kernel_h, kernel_w), offset_group = w_shape[2:], attrs.get("offset_group", 1)
    strides, dilations = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    pads = attrs.get("pads", [0] * 4)
    out = [(x_shape[2 + a] + pads[a] + pads[2 + a] - (k - 1) * dilations[a] - 1) // strides[a] + 1
           for a, k in enumerate((kernel_h, kernel_w))]
    feeds = {"x": random(x_shape), "w": random(w_shape, seed=1),
             "offset": (spread * rng.standard_normal((x_shape[0], 2 * offset_group * kernel_h * kernel_w, *out)))
             .astype(np.float32)}
    if bias:
        feeds["b"] = random((w_shape[0],), seed=2)
    if mask:
        feeds["mask"] = rng.uniform(0, 1, (x_shape[0], offset_group * kernel_h * kernel_w, *out)).astype(np.float32)
    model = node_model("DeformConv", feeds, attrs=attrs, opset=22)
    if mask and not bias:
        model.graph.node[0].input.insert(3, "")
    return model, feeds


@pytest.mark.parametrize("x_shape, w_shape, attrs, mask, bias", [
    ((1, 2, 5, 6), (3, 2, 3, 3), {}, True, True),
    ((2, 4, 6, 5), (4, 2, 2, 3), {"group": 2, "offset_group": 2, "strides": [2, 1], "dilations": [1, 2],
                                  "pads": [1, 0, 1, 2]}, True, True),
    ((1, 4, 5, 5), (2, 4, 3, 3), {"offset_group": 4, "pads": [1, 1, 1, 1]}, False, True),
    ((1, 6, 4, 7), (6, 2, 3, 2), {"group": 3, "offset_group": 2, "pads": [2, 1, 0, 1]}, True, False),
    ((1, 1, 3, 70), (16, 1, 1, 2), {"strides": [1, 1]}, False, False),  # two column tiles
    ((1, 2, 6, 6), (24, 2, 2, 2), {}, True, True),  # 12 output channels per item, 4 per pass
])
def test_deform_conv(x_shape, w_shape, attrs, mask, bias):
    model, feeds = _deform_feeds(x_shape, w_shape, attrs, mask, bias)
    assert_cpu_matches_ref(model, feeds)


def test_deform_conv_offsets_far_outside_read_zeros():
    model, feeds = _deform_feeds((1, 2, 4, 4), (2, 2, 2, 2), {}, mask=False)
    feeds["offset"][0, 0::4] = np.nan
    feeds["offset"][0, 1::4] = np.inf
    feeds["offset"][0, 2::4] = -1e30
    feeds["offset"][0, 3::4] = 40.0
    result = run_cpu(model, feeds)["y"]
    np.testing.assert_array_equal(result, np.broadcast_to(feeds["b"].reshape(1, 2, 1, 1), result.shape))


def test_three_dimensional_deform_conv_is_rejected():
    x = random((1, 1, 3, 3, 3))
    model = node_model("DeformConv", {"x": x}, {"w": random((1, 1, 2, 2, 2)), "offset": random((1, 24, 2, 2, 2))},
                       opset=22)
    with pytest.raises(UnsupportedByTargetError, match="DeformConv with 3 spatial dims"):
        compiler.compile(model, target="cpu")


# ----- LpPool -----------------------------------------------------------------------------------

LP_WINDOWS = [
    ((2, 3, 7, 9), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 2, 8, 7), {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [2, 1], "pads": [1, 0, 2, 1]}),
    ((1, 3, 6, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 6, 7), {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
    ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 2]}),
    ((1, 2, 4, 5, 6), {"kernel_shape": [2, 2, 3], "strides": [2, 2, 2], "pads": [0, 1, 1, 0, 0, 1]}),
]


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("shape, attrs", LP_WINDOWS)
def test_lp_pool(shape, attrs, p):
    x = random(shape)
    assert_cpu_matches_ref(node_model("LpPool", {"x": x}, attrs={**attrs, "p": p}, opset=18), {"x": x})


@pytest.mark.parametrize("p", [1, 2])
def test_lp_pool_ceil_mode_matches_onnxruntime(p):
    """onnx.reference scales overhanging ceil_mode windows as if the overhang held values."""
    x = random((1, 2, 7, 9))
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1, "p": p}
    assert_cpu_matches_onnxruntime(node_model("LpPool", {"x": x}, attrs=attrs, opset=18), {"x": x})


# ----- MaxPool: Indices, int8/uint8 ---------------------------------------------------------------

INDEX_WINDOWS = [
    ((2, 3, 7, 9), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 2, 7, 9), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 8, 7), {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [2, 1], "pads": [1, 0, 2, 1]}),
    ((1, 3, 6, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 2]}),
    ((2, 2, 4, 5, 6), {"kernel_shape": [2, 2, 3], "strides": [2, 2, 2], "pads": [0, 1, 1, 0, 0, 1]}),
]


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("shape, attrs", INDEX_WINDOWS)
def test_max_pool_indices_match_onnxruntime(shape, attrs, storage_order):
    """onnx.reference computes Indices wrongly for unit strides (window-relative, no channel offset)."""
    x = np.round(random(shape) * 2)  # ties: the first largest element of the window wins
    attrs = {**attrs, "storage_order": storage_order}
    model = node_model("MaxPool", {"x": x}, attrs=attrs, outputs=("y", "indices"))
    assert_cpu_matches_onnxruntime(model, {"x": x}, exact=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("shape, attrs", INDEX_WINDOWS)
def test_integer_max_pool_matches_onnxruntime(shape, attrs, dtype):
    """onnx.reference pads integer inputs with NaN, so it cannot pool them with pads."""
    x = np.random.default_rng(0).integers(np.iinfo(dtype).min, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    assert_cpu_matches_onnxruntime(node_model("MaxPool", {"x": x}, attrs=attrs), {"x": x}, exact=True)
    model = node_model("MaxPool", {"x": x}, attrs={**attrs, "storage_order": 1}, outputs=("y", "indices"))
    assert_cpu_matches_onnxruntime(model, {"x": x}, exact=True)


# ----- MaxUnpool --------------------------------------------------------------------------------

def _pooled_indices(x_shape, pooled_spatial, seed=0):
    """Valid indices: a position inside each element's own (image, channel) plane."""
    plane = int(np.prod(pooled_spatial))
    rng = np.random.default_rng(seed)
    planes = np.arange(x_shape[0] * x_shape[1]).reshape(x_shape[0], x_shape[1], *[1] * (len(x_shape) - 2))
    return (rng.integers(0, plane, x_shape) + planes * plane).astype(np.int64)


@pytest.mark.parametrize("x_shape, attrs, pooled", [
    ((2, 3, 3, 3), {"kernel_shape": [2, 2], "strides": [2, 2]}, (6, 6)),
    ((1, 2, 4, 3), {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 0, 1]}, (8, 5)),
    ((2, 2, 5), {"kernel_shape": [2], "strides": [1]}, (6,)),
    ((1, 2, 2, 3, 2), {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]}, (4, 6, 4)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_unpool(x_shape, attrs, pooled, dtype):
    x, indices = random(x_shape, dtype), _pooled_indices(x_shape, pooled)
    model = node_model("MaxUnpool", {"x": x, "i": indices}, attrs=attrs, opset=11)
    assert_cpu_matches_ref(model, {"x": x, "i": indices}, exact=True)


def test_max_unpool_skips_indices_outside_their_plane():
    x = random((1, 2, 2, 2))
    indices = np.array([[[[0, -1], [5, 5]], [[16, 15], [31, 99]]]], dtype=np.int64)  # planes of 16 elements
    model = node_model("MaxUnpool", {"x": x, "i": indices}, attrs={"kernel_shape": [2, 2], "strides": [2, 2]})
    expected = np.zeros((1, 2, 16), np.float32)
    expected[0, 0, [0, 5]] = x[0, 0, 0, 0], x[0, 0, 1, 1]  # a repeated index keeps the last element
    expected[0, 1, [0, 15]] = x[0, 1, 0, 0], x[0, 1, 1, 0]
    np.testing.assert_array_equal(run_cpu(model, {"x": x, "i": indices})["y"], expected.reshape(1, 2, 4, 4))
