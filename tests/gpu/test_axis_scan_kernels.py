"""gpu CumSum, CumProd, Hardmax and LpNormalization beside the ref target (onnx.reference), over
float32, float64 and integer inputs."""

import numpy as np
import onnx
import pytest

from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random, run_gpu


def test_cumsum_and_cumprod_every_direction_and_dtype():
    x, d = random((2, 3, 5)), random((4, 6), np.float64, seed=1)
    i = random((3, 4), np.int32, seed=2)
    small = (random((2, 5), seed=3) * 0.5 + 1.0).astype(np.float32)
    feeds = {"x": x, "d": d, "i": i, "small": small}
    constants = {"a0": np.array(0, np.int64), "a1": np.array(1, np.int32), "am1": np.array(-1, np.int64)}
    nodes = [("CumSum", ["x", "a1"], {}), ("CumSum", ["x", "am1"], {"exclusive": 1}),
             ("CumSum", ["x", "a0"], {"reverse": 1}), ("CumSum", ["x", "a1"], {"reverse": 1, "exclusive": 1}),
             ("CumSum", ["d", "a1"], {}), ("CumSum", ["i", "a0"], {"reverse": 1}),
             ("CumProd", ["small", "a1"], {}), ("CumProd", ["small", "am1"], {"exclusive": 1, "reverse": 1}),
             ("CumProd", ["i", "a1"], {"exclusive": 1})]
    model = nodes_model(nodes, feeds, constants, opset=onnx.defs.onnx_opset_version())  # CumProd is recent
    assert_gpu_matches_ref(model, feeds, tolerance={"rtol": 1e-5, "atol": 1e-6})


def test_hardmax_first_maximum_nan_and_flattening_before_opset_13():
    x, d = random((2, 3, 4)), random((3, 5), np.float64, seed=1)
    x[0, 1, :] = [1.0, 3.0, 3.0, 0.0]  # ties: the first wins
    x[1, 2, :] = [0.0, np.nan, 5.0, np.nan]  # the first NaN wins
    feeds = {"x": x, "d": d}
    nodes = [("Hardmax", ["x"], {}), ("Hardmax", ["x"], {"axis": 0}), ("Hardmax", ["x"], {"axis": 1}),
             ("Hardmax", ["d"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, exact=True)
    old = [("Hardmax", ["x"], {"axis": 1}), ("Hardmax", ["x"], {})]
    assert_gpu_matches_ref(nodes_model(old, feeds, opset=11), feeds, exact=True)


def test_lp_normalization_p1_p2_and_zero_lines():
    x, d = random((2, 3, 4)), random((3, 5), np.float64, seed=1)
    x[1, :, 2] = 0.0
    feeds = {"x": x, "d": d}
    nodes = [("LpNormalization", ["x"], {}), ("LpNormalization", ["x"], {"axis": 1, "p": 1}),
             ("LpNormalization", ["d"], {"axis": 0})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, tolerance={"rtol": 1e-5, "atol": 1e-6})


def test_scan_axis_computed_at_run_time_is_refused():
    from compiler.driver import UnsupportedByTargetError

    x = random((2, 3))
    feeds = {"x": x, "axis": np.array(1, np.int64)}
    with pytest.raises(UnsupportedByTargetError, match="CumSum with an axis computed at run time"):
        run_gpu(nodes_model([("CumSum", ["x", "axis"], {})], feeds), feeds)
