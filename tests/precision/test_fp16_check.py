"""The fp16 check: which weights and values float16 cannot hold, found on calibration data or
seeded random inputs; and the shared calibration samples it runs on."""

import numpy as np
import pytest

from compiler.calibration_data import CalibrationError, calibration_samples
from compiler.driver import optimize
from compiler.precision.fp16_check import FP16_MAX, plan_fp16, weight_problem
from compiler.precision.options import precision_of, precision_problem
from tests.precision.fp16_models import conv_model, overflow_model


def test_weight_problem_flags_overflow_and_underflow_only():
    rng = np.random.default_rng(0)
    ordinary = rng.standard_normal(1000).astype(np.float32)
    assert weight_problem(ordinary) is None
    assert weight_problem(np.array([1.0, 7e4], np.float32)).startswith("overflow: max |w| = 7e+04")
    with np.errstate(over="ignore"):
        assert np.isinf(np.float16(7e4))  # what the check protects against
    tiny = (ordinary * 1e-6).astype(np.float32)  # mostly below float16's normal range (6.1e-5)
    assert weight_problem(tiny).startswith("underflow")
    rounding = np.linalg.norm(tiny.astype(np.float16).astype(np.float64) - tiny) / np.linalg.norm(tiny)
    assert rounding > 2.0 ** -11
    assert weight_problem(np.zeros(4, np.float32)) is None
    assert weight_problem(np.array([np.inf, 1.0], np.float32)) is None  # inf stays inf in float16


def test_overflowing_value_is_found_on_random_inputs_not_on_small_calibration_data(tmp_path):
    graph = optimize(overflow_model(), "cpu")
    plan = plan_fp16(graph, {}, keep_weights_of_kept_nodes=True)
    big = [name for name, why in plan.kept_nodes.items() if why.startswith("overflow: output 0 reaches")]
    assert len(big) == 1 and graph.node(big[0]).op_type == "MatMul"
    assert plan.checked_on == "16 seeded random normal input(s)"
    wide = "read only by nodes that compute in float32"  # the fused Mul/Mul/Add that reads `big`
    assert plan.kept_weights == {"W": f"read by {big[0]!r}, which computes in float32", "s1": wide, "s2": wide}
    np.save(tmp_path / "x.npy", np.full((5, 2, 8), 0.01, np.float32))  # |big| = 1600
    calibrated = plan_fp16(graph, {"calibration": str(tmp_path), "calibration_size": 3}, True)
    assert calibrated.kept_nodes == {} and calibrated.kept_weights == {}
    assert calibrated.checked_on == f"3 sample(s) of {tmp_path}"
    assert "W" in calibrated.half_weights


def test_cpu_plan_keeps_only_weights_float16_cannot_hold():
    model = conv_model({"fc": np.full((10, 16), 1e5, np.float32), "bias": np.full(16, 1e-7, np.float32)})
    graph = optimize(model, "cpu")
    plan = plan_fp16(graph, {}, keep_weights_of_kept_nodes=False)
    kept = {name: why.split(":")[0] for name, why in plan.kept_weights.items()}
    assert sorted(kept.values()) == ["overflow", "underflow"]
    assert all(np.asarray(graph.node(name).attrs["value"]).dtype == np.float32 for name in plan.half_weights)
    assert plan.half_weights and not plan.half_weights & set(kept)


def test_precision_names_and_targets():
    assert precision_of({}) == "fp32" and precision_of({"precision": "float16"}) == "fp16"
    assert precision_problem({"precision": "fp16"}, "gpu") is None
    assert precision_problem({"precision": "half"}) == \
        "precision 'half' is not one of ['float16', 'float32', 'fp16', 'fp32', 'int8']"
    assert precision_problem({"precision": "fp16"}, "gna") == \
        "precision 'fp16' is compiled for the targets ['cpu', 'gpu'], not 'gna'"


def test_calibration_samples_size_dtype_and_errors(tmp_path):
    graph = optimize(overflow_model(), "ref")
    assert calibration_samples(graph, size=3)["x"].shape == (3, 2, 8)
    np.savez(tmp_path / "data.npz", x=np.ones((6, 2, 8), np.float64))
    loaded = calibration_samples(graph, tmp_path / "data.npz", size=4)["x"]
    assert loaded.shape == (4, 2, 8) and loaded.dtype == np.float32
    for path in (tmp_path / "data.npz", None):
        with pytest.raises(CalibrationError, match="calibration size 0: give a positive number"):
            calibration_samples(graph, path, size=0)
    np.savez(tmp_path / "other.npz", z=np.ones((2, 8), np.float32))
    with pytest.raises(CalibrationError, match=r"has no samples for input\(s\) \['x'\]"):
        calibration_samples(graph, tmp_path / "other.npz")


def test_synthetic_samples_give_integer_inputs_small_ids():
    from onnx import TensorProto, helper

    model = helper.make_model(helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"])], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])],
        initializer=[helper.make_tensor("table", TensorProto.FLOAT, [10, 2], list(range(20)))]),
        opset_imports=[helper.make_opsetid("", 17)])
    ids = calibration_samples(optimize(model, "ref"), size=50)["ids"]
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 10
    assert FP16_MAX == 65504.0
