"""cpu Resize, Upsample, GridSample, AffineGrid, RoiAlign and Col2Im kernels against the ref target
(onnx.reference), at 1 and 2 threads; Upsample and Resize-10, which onnx.reference cannot run,
against ONNX Runtime."""

import itertools

import numpy as np
import onnxruntime
import pytest

import compiler
import runtime
from compiler.codegen.llvm.kernels.registry import kernel_for
from compiler.codegen.resize_tables import Settings, resized_axis
from compiler.driver import UnsupportedByTargetError
from frontends.onnx.importer import import_model
from tests.codegen.kernel_harness import TOLERANCE, assert_cpu_matches_ref, node_model, random, run_cpu


def assert_cpu_matches_onnxruntime(model, feeds: dict, exact: bool = False) -> None:
    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)
    actual = list(run_cpu(model, feeds).values())
    for got, want in zip(actual, expected):
        assert got.shape == want.shape and got.dtype == want.dtype
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, **TOLERANCE)


# ----- Resize ------------------------------------------------------------------------------------
def resize(x, scales=None, sizes=None, roi=None, opset=19, **attrs):
    """A Resize node whose roi, scales and sizes are constants."""
    constants = {"roi": np.array(roi or [], np.float32), "scales": np.array(scales or [], np.float32)}
    if sizes is not None:
        constants["sizes"] = np.array(sizes, np.int64)
    return node_model("Resize", {"x": x}, constants, attrs, opset=opset)


def check_resize(x, **arguments):
    exact = arguments.get("mode", "nearest") == "nearest" or np.issubdtype(x.dtype, np.integer)
    return assert_cpu_matches_ref(resize(x, **arguments), {"x": x}, exact=exact)


COORDINATE_MODES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"]


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("coordinate_mode", COORDINATE_MODES)
@pytest.mark.parametrize("scales", [[1, 1, 1.7, 0.6], [1, 1, 0.5, 2.25]])
def test_resize_modes(mode, coordinate_mode, scales):
    check_resize(random((2, 3, 6, 7)), scales=scales, mode=mode, coordinate_transformation_mode=coordinate_mode)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "asymmetric", "align_corners"])
def test_resize_nearest_modes(nearest_mode, coordinate_mode):
    """Scales 2 and 0.5 put many source coordinates exactly halfway between two elements."""
    check_resize(random((1, 2, 6, 8)), scales=[1, 1, 2, 0.5], mode="nearest", nearest_mode=nearest_mode,
                 coordinate_transformation_mode=coordinate_mode)


@pytest.mark.parametrize("mode, extrapolation, roi", [
    ("linear", 0.0, [0, 0, 0.2, 0.3, 1, 1, 0.8, 0.9]),
    ("linear", 10.0, [0, 0, -0.2, 0.3, 1, 1, 0.8, 1.4]),
    ("cubic", -3.0, [0, 0, 0.4, -0.5, 1, 1, 1.6, 0.5]),
    ("nearest", 2.5, [0, 0, 0.9, -0.1, 1, 1, 0.1, 1.2]),
])
def test_resize_tf_crop_and_resize(mode, extrapolation, roi):
    check_resize(random((1, 2, 6, 7)), sizes=[1, 2, 5, 9], roi=roi, mode=mode, extrapolation_value=extrapolation,
                 coordinate_transformation_mode="tf_crop_and_resize")


def test_resize_tf_crop_and_resize_with_axes_and_scales():
    check_resize(random((1, 2, 6, 7)), scales=[0.8, 1.3], roi=[0.1, -0.1, 0.9, 1.3], axes=[2, 3], mode="linear",
                 coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=1.5)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("resized", [{"scales": [1, 1, 0.3, 0.45]}, {"sizes": [2, 3, 3, 2]},
                                     {"scales": [1, 1, 0.6, 1.5]}])
def test_resize_antialias(mode, resized):
    check_resize(random((2, 3, 9, 7)), **resized, mode=mode, antialias=1)


@pytest.mark.parametrize("scales", [[1, 1, 1.7, 0.6], [1, 1, 0.4, 0.5]])
def test_resize_cubic_coefficient_and_exclude_outside(scales):
    check_resize(random((1, 2, 7, 9)), scales=scales, mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("axes, sizes", [([2, 3], [5, 4]), ([3, 2], [9, 3]), ([3], [11])])
def test_resize_axes_and_aspect_ratio_policy(mode, policy, axes, sizes):
    check_resize(random((1, 2, 6, 7)), sizes=sizes, axes=axes, mode=mode, keep_aspect_ratio_policy=policy)


@pytest.mark.parametrize("shape, scales", [
    ((4, 6, 5), [0.5, 2, 1]),  # the outer axes, which merge with nothing
    ((2, 3, 4, 5, 6), [1, 1, 1.5, 0.5, 2]),  # three resized axes
    ((3, 8, 5), [1, 1.5, 1]),  # the innermost axis kept: rows blend straight into the output
    ((9,), [2.5]),
    ((2, 3, 4, 5), [1, 1, 1, 1]),  # nothing resized
])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_any_axes(shape, scales, mode):
    check_resize(random(shape), scales=scales, mode=mode)


@pytest.mark.parametrize("shape, scales", [((1, 2, 2, 3000), [1, 1, 1.5, 1.7]), ((1, 1, 3, 9000), [1, 1, 2, 0.25]),
                                           ((1, 1, 2, 2500), [1, 1, 3, 1])])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_wide_rows_split_into_blocks(shape, scales, mode):
    check_resize(random(shape), scales=scales, mode=mode)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.uint8, np.int8, np.int32, np.uint16])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_dtypes(dtype, mode):
    x = (random((1, 2, 5, 6)) * (1 if dtype == np.float16 else 30)).astype(dtype)
    model = resize(x, scales=[1, 1, 1.5, 0.7], mode=mode)
    if dtype == np.float16 and mode != "nearest":  # onnx.reference blends in float64, the cpu target in float32
        expected = runtime.load(compiler.compile(model, target="ref")).infer({"x": x})["y"]
        np.testing.assert_allclose(run_cpu(model, {"x": x})["y"], expected, rtol=2e-3, atol=2e-3)
    else:
        check_resize(x, scales=[1, 1, 1.5, 0.7], mode=mode)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_resize_nearest_copies_any_dtype(dtype):
    x = np.abs(random((1, 2, 3, 4), np.int64)).astype(dtype)
    check_resize(x, scales=[1, 1, 2.5, 0.5], mode="nearest")


def test_resize_nearest_bool():
    """onnx.reference cannot resize bool: compare with its uint8 result."""
    x = random((1, 2, 3, 4), np.int64) > 0
    actual = run_cpu(resize(x, scales=[1, 1, 2.5, 0.5], mode="nearest"), {"x": x})["y"]
    expected = check_resize(x.astype(np.uint8), scales=[1, 1, 2.5, 0.5], mode="nearest")["y"]
    np.testing.assert_array_equal(actual, expected.astype(bool))


def test_resize_integers_round_half_to_even_and_saturate():
    x = np.array([[[[0, 255, 0, 1, 2]]]], np.uint8)
    check_resize(x, sizes=[1, 1, 1, 10], mode="cubic")
    check_resize(x, sizes=[1, 1, 1, 10], mode="linear", coordinate_transformation_mode="align_corners")


def test_resize_tables_follow_the_reference_neighbours():
    settings = Settings("linear", "half_pixel", "round_prefer_floor", -0.75, False, False, 0.0)
    axis = resized_axis(settings, size_in=4, size_out=8, scale=2.0, crop=None)
    assert axis.index.tolist() == [[0, 0], [0, 1], [0, 1], [1, 2], [1, 2], [2, 3], [2, 3], [3, 3]]
    np.testing.assert_allclose(axis.weight[:3], [[0.25, 0.75], [0.75, 0.25], [0.25, 0.75]])
    nearest = resized_axis(Settings("nearest", "asymmetric", "ceil", -0.75, False, False, 0.0), 4, 2, 0.5, None)
    assert nearest.index.tolist() == [[0], [2]] and nearest.weight is None


@pytest.mark.parametrize("opset, mode, scales", [(9, "nearest", [1, 1, 2, 3]), (9, "linear", [1, 1, 2, 1.5]),
                                                 (9, "nearest", [1, 1, 1.6, 2.5]), (7, "nearest", [1, 2, 1.5, 2])])
def test_upsample_matches_onnxruntime(opset, mode, scales):
    x = random((1, 2, 5, 7))
    if opset < 9:
        model = node_model("Upsample", {"x": x}, attrs={"mode": mode, "scales": scales}, opset=opset)
    else:
        model = node_model("Upsample", {"x": x}, {"scales": np.array(scales, np.float32)}, {"mode": mode}, opset=opset)
    assert_cpu_matches_onnxruntime(model, {"x": x}, exact=mode == "nearest")


def test_upsample_nearest_matches_ref():
    x = random((1, 2, 3, 4))
    scales = np.array([1, 1, 2, 3], np.float32)
    model = node_model("Upsample", {"x": x}, {"scales": scales}, {"mode": "nearest"}, opset=9)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


@pytest.mark.parametrize("mode, scales", [("nearest", [1, 1, 0.6, 0.4]), ("nearest", [1, 1, 1.6, 2.5]),
                                          ("linear", [1, 1, 0.6, 1.7])])
def test_resize_10_matches_onnxruntime(mode, scales):
    """Resize-10: asymmetric coordinates; nearest takes the floor upsampling and the ceiling downsampling."""
    x = random((1, 2, 7, 8))
    model = node_model("Resize", {"x": x}, {"scales": np.array(scales, np.float32)}, {"mode": mode}, opset=10)
    assert_cpu_matches_onnxruntime(model, {"x": x}, exact=mode == "nearest")


def test_resize_tf_half_pixel_for_nn_matches_onnxruntime():
    x = random((1, 2, 5, 6))
    model = resize(x, scales=[1, 1, 1.7, 0.5], opset=11, mode="nearest",
                   coordinate_transformation_mode="tf_half_pixel_for_nn")
    assert_cpu_matches_onnxruntime(model, {"x": x}, exact=True)


def kernel_problem(model) -> str | None:
    """The cpu kernel's own reason for the model's single node (whatever the graph's shapes)."""
    graph = import_model(model)
    node = next(node for node in graph.nodes() if not (node.is_input or node.is_constant))
    return kernel_for(node).check(graph, node)


def test_resize_needs_constant_scales_but_not_roi():
    feeds = {"x": random((1, 1, 2, 2)), "roi": np.array([], np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}
    model = node_model("Resize", feeds, attrs={"mode": "linear"}, opset=19)
    assert "Resize with scales (input 2) computed at run time" in kernel_problem(model)
    model = node_model("Resize", {"x": feeds["x"], "roi": feeds["roi"]}, {"scales": feeds["scales"]},
                       {"mode": "linear"}, opset=19)
    assert kernel_problem(model) is None


def test_resize_nearest_exclude_outside():
    """Nearest with exclude_outside reads 0 where it picks outside the input in onnx.reference: such
    nodes are refused, the others compile as if the attribute were not there."""
    x = random((1, 1, 4, 4))
    check_resize(x, scales=[1, 1, 0.5, 2], mode="nearest", exclude_outside=1)
    model = resize(x, scales=[1, 1, 1, 2], mode="nearest", nearest_mode="ceil", exclude_outside=1)
    assert "picks elements outside the input" in kernel_problem(model)


def test_resize_nearest_antialias_is_rejected():
    with pytest.raises(UnsupportedByTargetError, match="antialias=1 applies to linear and cubic"):
        compiler.compile(resize(random((1, 1, 4, 4)), scales=[1, 1, 0.5, 0.5], mode="nearest", antialias=1),
                         target="cpu")


# ----- GridSample --------------------------------------------------------------------------------
def sampling_grid(shape, seed=1):
    """Positions a little past [-1, 1], every 7th on a multiple of 1/4 (halfway ties for nearest)."""
    grid = np.random.default_rng(seed).uniform(-1.4, 1.4, shape).astype(np.float32)
    grid.reshape(-1)[::7] = np.round(grid.reshape(-1)[::7] * 4) / 4
    return grid


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_grid_sample(mode, padding, align_corners):
    x, grid = random((2, 3, 5, 4)), sampling_grid((2, 9, 11, 2))  # 99 positions: two blocks
    model = node_model("GridSample", {"x": x, "grid": grid}, opset=22,
                       attrs={"mode": mode, "padding_mode": padding, "align_corners": align_corners})
    assert_cpu_matches_ref(model, {"x": x, "grid": grid}, exact=mode == "nearest")


@pytest.mark.parametrize("mode, padding",
                         list(itertools.product(["nearest", "linear", "cubic"], ["zeros", "reflection"])))
@pytest.mark.parametrize("shape, grid_shape", [((1, 2, 3, 4, 5), (1, 3, 2, 4, 3)), ((2, 3, 6), (2, 5, 1))])
def test_grid_sample_volumetric_and_1d(mode, padding, shape, grid_shape):
    x, grid = random(shape), sampling_grid(grid_shape)
    model = node_model("GridSample", {"x": x, "grid": grid}, opset=22, attrs={"mode": mode, "padding_mode": padding})
    assert_cpu_matches_ref(model, {"x": x, "grid": grid}, exact=mode == "nearest")


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_grid_sample_16_mode_names(mode):
    """GridSample-16 names its modes bilinear and bicubic, which onnx.reference does not know."""
    x, grid = random((1, 2, 4, 5)), sampling_grid((1, 3, 3, 2))
    model = node_model("GridSample", {"x": x, "grid": grid}, opset=16, attrs={"mode": mode, "padding_mode": "zeros"})
    assert_cpu_matches_onnxruntime(model, {"x": x, "grid": grid}, exact=mode == "nearest")


@pytest.mark.parametrize("x_dtype, grid_dtype", [(np.float64, np.float64), (np.float32, np.float64),
                                                 (np.float64, np.float32)])
def test_grid_sample_dtypes(x_dtype, grid_dtype):
    x, grid = random((1, 2, 4, 5), x_dtype), sampling_grid((1, 3, 3, 2)).astype(grid_dtype)
    model = node_model("GridSample", {"x": x, "grid": grid}, opset=22, attrs={"padding_mode": "reflection"})
    assert_cpu_matches_ref(model, {"x": x, "grid": grid})


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_grid_sample_non_finite_grid_stays_inside(padding, mode):
    """NaN, infinite and huge positions read nothing outside X (onnx.reference raises on them)."""
    x = random((1, 1, 3, 3))
    grid = np.array([[[[np.nan, 0], [np.inf, -np.inf], [1e30, -1e30], [0, 0]]]], np.float32)
    model = node_model("GridSample", {"x": x, "grid": grid}, opset=22, attrs={"mode": mode, "padding_mode": padding})
    y = run_cpu(model, {"x": x, "grid": grid})["y"]
    assert y.shape == (1, 1, 1, 4)
    if padding == "zeros":
        assert (y[0, 0, 0, 1:3] == 0).all()


# ----- AffineGrid --------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [[2, 3, 4, 5], [1, 2, 3, 4, 5], [2, 1, 2, 300]])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_affine_grid(size, align_corners):
    rank = len(size) - 2
    theta = random((size[0], rank, rank + 1))
    model = node_model("AffineGrid", {"theta": theta}, {"size": np.array(size, np.int64)},
                       {"align_corners": align_corners}, opset=20)
    assert_cpu_matches_ref(model, {"theta": theta})


def test_affine_grid_float64():
    """onnx.reference returns float32 whatever theta is; the cpu target keeps theta's dtype."""
    theta = random((2, 2, 3), np.float64)
    size = np.array([2, 3, 4, 5], np.int64)
    expected = run_cpu(node_model("AffineGrid", {"theta": theta.astype(np.float32)}, {"size": size}, opset=20),
                       {"theta": theta.astype(np.float32)})["y"]
    actual = run_cpu(node_model("AffineGrid", {"theta": theta}, {"size": size}, opset=20), {"theta": theta})["y"]
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


def test_affine_grid_single_positions_are_centred():
    """With align_corners, a lone position is 0 (PyTorch); onnx.reference divides by zero there."""
    theta = random((2, 2, 3))
    model = node_model("AffineGrid", {"theta": theta}, {"size": np.array([2, 1, 1, 3], np.int64)},
                       {"align_corners": 1}, opset=20)
    y = run_cpu(model, {"theta": theta})["y"]
    expected = np.einsum("nij,wj->nwi", theta, [[-1, 0, 1], [0, 0, 1], [1, 0, 1]]).astype(np.float32)
    np.testing.assert_allclose(y.reshape(2, 3, 2), expected, rtol=1e-6, atol=1e-6)


# ----- RoiAlign ----------------------------------------------------------------------------------
ROIS = np.array([[0, 0, 9, 9], [0, 5, 4, 9], [5, 5, 9, 9], [-3, -2, 14, 15], [2.5, 3.3, 2.7, 3.1], [8, 1, 3, 2]],
                np.float32)
BATCH_INDICES = np.array([0, 1, 1, 0, 1, 0], np.int64)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("sampling_ratio, spatial_scale", [(0, 1.0), (2, 0.5), (3, 1.0)])
def test_roi_align(mode, coordinate_mode, sampling_ratio, spatial_scale):
    x = random((2, 3, 10, 12))
    feeds = {"x": x, "rois": ROIS, "batch_indices": BATCH_INDICES}
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinate_mode, "sampling_ratio": sampling_ratio,
             "spatial_scale": spatial_scale, "output_height": 3, "output_width": 4}
    assert_cpu_matches_ref(node_model("RoiAlign", feeds, attrs=attrs, opset=22), feeds)


def test_roi_align_float64():
    x = random((2, 3, 10, 12), np.float64)
    feeds = {"x": x, "rois": ROIS.astype(np.float64), "batch_indices": BATCH_INDICES}
    model = node_model("RoiAlign", feeds, attrs={"output_height": 2, "output_width": 3}, opset=16)
    assert_cpu_matches_ref(model, feeds)


def test_roi_align_10_matches_onnxruntime():
    """RoiAlign-10 has no coordinate_transformation_mode: it is output_half_pixel."""
    x = random((2, 3, 10, 12))
    feeds = {"x": x, "rois": ROIS[:3], "batch_indices": BATCH_INDICES[:3]}
    assert_cpu_matches_onnxruntime(node_model("RoiAlign", feeds, attrs={"sampling_ratio": 2}, opset=10), feeds)


def test_roi_align_batch_index_out_of_range_gives_zeros():
    x = random((2, 3, 10, 12))
    feeds = {"x": x, "rois": ROIS[:3], "batch_indices": np.array([0, 7, -1], np.int64)}
    y = run_cpu(node_model("RoiAlign", feeds, attrs={"output_height": 2, "output_width": 2}, opset=16), feeds)["y"]
    assert (y[1:] == 0).all() and (y[0] != 0).any()


# ----- Col2Im ------------------------------------------------------------------------------------
@pytest.mark.parametrize("image, block, attrs", [
    ([5, 5], [2, 2], {}),
    ([5, 5], [2, 2], {"strides": [2, 2]}),
    ([5, 5], [3, 2], {"pads": [0, 1, 2, 1], "dilations": [1, 2], "strides": [2, 1]}),
    ([6, 7], [2, 3], {"pads": [1, 0, 1, 2], "dilations": [2, 1], "strides": [1, 3]}),
    ([3, 4, 5], [2, 2, 3], {"strides": [1, 2, 1], "pads": [1, 0, 0, 0, 1, 1]}),
    ([9], [3], {"strides": [2], "pads": [1, 1]}),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_col2im(image, block, attrs, dtype):
    rank = len(image)
    strides, dilations = attrs.get("strides", [1] * rank), attrs.get("dilations", [1] * rank)
    pads = attrs.get("pads", [0] * 2 * rank)
    blocks = np.prod([(image[i] + pads[i] + pads[rank + i] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1
                      for i in range(rank)])
    x = random((2, 3 * int(np.prod(block)), int(blocks)), dtype)
    model = node_model("Col2Im", {"x": x}, {"image_shape": np.array(image, np.int64),
                                             "block_shape": np.array(block, np.int64)}, attrs, opset=18)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


def test_col2im_with_run_time_block_shape_is_rejected():
    feeds = {"x": random((1, 4, 16)), "block_shape": np.array([2, 2], np.int64)}
    model = node_model("Col2Im", feeds, {"image_shape": np.array([5, 5], np.int64)}, opset=18)
    model.graph.node[0].input[:] = ["x", "image_shape", "block_shape"]
    assert "block_shape (input 2) computed at run time" in kernel_problem(model)
