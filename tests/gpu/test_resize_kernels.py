"""gpu Resize (nearest, linear, cubic; the cpu target's coordinate rules) beside the ref target
(onnx.reference)."""

import numpy as np
import onnxruntime
import pytest

import compiler
from compiler.driver import UnsupportedByTargetError
from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random, run_gpu

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
COORDINATES = ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "half_pixel_symmetric")


def _resize(inputs: list[str], **attrs) -> tuple:
    return ("Resize", inputs, attrs)


def test_resize_modes_and_coordinate_rules():
    x = random((2, 3, 5, 6))
    constants = {"up": np.array([1, 1, 2, 1.5], np.float32), "down": np.array([1, 1, 0.6, 0.5], np.float32),
                 "sizes": np.array([2, 3, 7, 4], np.int64), "odd": np.array([1, 1, 1.7, 2.3], np.float32),
                 "roi": np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], np.float32), "hw": np.array([8, 9], np.int64)}
    nodes = []
    for mode in ("nearest", "linear", "cubic"):
        nodes += [_resize(["x", "", "up"], mode=mode, coordinate_transformation_mode=c) for c in COORDINATES]
        nodes += [_resize(["x", "", "down"], mode=mode), _resize(["x", "", "", "sizes"], mode=mode),
                  _resize(["x", "roi", "odd"], mode=mode, coordinate_transformation_mode="tf_crop_and_resize",
                          extrapolation_value=-3.0)]
    nodes += [_resize(["x", "", "odd"], mode="nearest", nearest_mode=m) for m in ("round_prefer_ceil", "floor", "ceil")]
    nodes += [_resize(["x", "", "odd"], mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1),
              _resize(["x", "", "down"], mode="linear", antialias=1),
              _resize(["x", "", "down"], mode="cubic", antialias=1),
              _resize(["x", "", "", "hw"], mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger")]
    assert_gpu_matches_ref(nodes_model(nodes, {"x": x}, constants, opset=19), {"x": x}, tolerance=TOLERANCE)


def test_nearest_copies_integers_and_upsample():
    """onnx.reference cannot run Upsample: onnxruntime is its oracle."""
    x, i = random((1, 2, 3, 4)), random((1, 2, 3, 4), np.int8)
    constants = {"scales": np.array([1, 1, 2.5, 1.5], np.float32)}
    nodes = [_resize(["i", "", "scales"], mode="nearest"),
             _resize(["i", "", "scales"], mode="nearest", coordinate_transformation_mode="align_corners")]
    feeds = {"x": x, "i": i}
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants, opset=19), feeds, exact=True)
    upsample = nodes_model([("Upsample", ["x", "scales"], {})], {"x": x}, constants, opset=9)
    expected = onnxruntime.InferenceSession(upsample.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(run_gpu(upsample, {"x": x})["Upsample_0"], expected)


def test_linear_on_integers_is_reported():
    i = random((1, 2, 3, 4), np.int8)
    model = nodes_model([_resize(["i", "", "scales"], mode="linear")], {"i": i},
                        {"scales": np.array([1, 1, 2, 2], np.float32)})
    with pytest.raises(UnsupportedByTargetError, match="Resize mode=linear on int8 is not compiled by the gpu target"):
        compiler.compile(model, target="gpu")
