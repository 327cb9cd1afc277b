"""precision="fp16" on the cpu target: float16 weights in the artifact, widened to float32 once at
load (Python runtime and C loader alike), numerics against onnxruntime, the report, the errors."""

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from compiler.cli import EXIT_ERROR, EXIT_OK, main
from compiler.codegen.llvm.linker import find_c_compiler
from compiler.driver import UnsupportedByTargetError
from tests.models.builders import single_node_model
from tests.precision.fp16_models import conv_model, overflow_model, rounded_to_half

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "c" / "run_model.c"


def onnxruntime_outputs(model, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.fixture(scope="module")
def artifacts():
    model = conv_model()
    return model, compiler.compile(model, "cpu"), compiler.compile(model, "cpu", precision="fp16")


def test_weights_are_stored_as_float16_and_the_artifact_shrinks(artifacts):
    _, full, half = artifacts
    assert len(half.files["weights.bin"]) <= 0.6 * len(full.files["weights.bin"])  # (int64 shapes stay)
    storage = half.manifest["weights_storage"]
    floats = {entry["name"]: entry["dtype"] for entry in storage["weights"] if entry["dtype"].startswith("float")}
    assert floats == {"w.packed": "float16", "bias": "float16", "fc": "float16", "fc_bias": "float16"}  # w: NCHWc
    assert storage["bytes"] == len(full.files["weights.bin"])
    assert "weights_storage" not in full.manifest and "report.json" not in full.files


def test_outputs_match_onnxruntime_on_the_half_rounded_weights(artifacts):
    """The kernels are the float32 ones, so the fp16 artifact is the float32 model with float16-rounded
    weights (tight tolerance) and near the float32 model itself (fp16 tolerance)."""
    model, _, half = artifacts
    x = np.random.default_rng(1).standard_normal((1, 3, 12, 12)).astype(np.float32)
    got = runtime.load(half).infer({"x": x})["y"]
    np.testing.assert_allclose(got, onnxruntime_outputs(rounded_to_half(model), {"x": x})[0], rtol=1e-5, atol=1e-6)
    expected = onnxruntime_outputs(model, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=2e-3 * np.abs(expected).max())
    assert not np.array_equal(got, expected)


def test_report_lists_bytes_and_output_error(artifacts):
    _, _, half = artifacts
    report = json.loads(half.files["report.json"])
    weights = report["weights"]
    assert weights["float32_bytes"] == 4 * (16 * 27 + 16 + 160 + 10) and weights["ratio"] == 0.5
    assert report["kept_nodes"] == [] and report["kept_weights"] == []
    error = report["output_error"]
    assert 0 < error["max_abs"] < 1e-2 and 40 < error["snr_db"] < 100


def test_weights_float16_cannot_hold_stay_float32():
    huge = np.full((10, 16), 1e5, np.float32)
    model = conv_model({"fc": huge})
    artifact = compiler.compile(model, "cpu", precision="fp16")
    stored = {entry["name"]: entry["dtype"] for entry in artifact.manifest["weights_storage"]["weights"]}
    assert stored["fc"] == "float32" and stored["w.packed"] == "float16"  # (w laid out for NCHWc)
    report = json.loads(artifact.files["report.json"])
    assert report["kept_weights"] == [{"weight": "fc", "why": "overflow: max |w| = 1e+05 > 65504"}]
    x = np.random.default_rng(2).standard_normal((1, 3, 12, 12)).astype(np.float32)
    got = runtime.load(artifact).infer({"x": x})["y"]
    assert np.all(np.isfinite(got))
    expected = onnxruntime_outputs(rounded_to_half(model, keep=("fc",)), {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_cpu_reports_overflowing_values_and_computes_them_in_float32():
    artifact = compiler.compile(overflow_model(), "cpu", precision="fp16")
    report = json.loads(artifact.files["report.json"])
    assert [entry["node"] for entry in report["kept_nodes"]] == ["big"]
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    z, big = onnxruntime_outputs(rounded_to_half(overflow_model()), {"x": x})  # W = 2e4 is exact in float16
    assert np.abs(big).max() > 65504
    got = runtime.load(artifact).infer({"x": x})
    np.testing.assert_allclose(got["big"], big, rtol=1e-5)
    np.testing.assert_allclose(got["z"], z, rtol=1e-5)


def run_in_c(artifact, x: np.ndarray, output_shape: tuple, tmp_path) -> np.ndarray:
    """Output of examples/c/run_model.c, which reads weights.bin through model.h's kiln_widen_weights."""
    directory = artifact.save(tmp_path / "model.kiln")
    binary = tmp_path / "run_model"
    subprocess.run([find_c_compiler(), "-O2", "-I", str(directory), str(EXAMPLE), str(directory / "model.so"),
                    f"-Wl,-rpath,{directory}", "-o", str(binary)], check=True, capture_output=True)
    x.tofile(tmp_path / "x.bin")
    result = subprocess.run([str(binary), str(directory / "weights.bin"), str(tmp_path / "x.bin"),
                             str(tmp_path / "y.bin")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return np.fromfile(tmp_path / "y.bin", dtype=np.float32).reshape(output_shape)


def test_c_loader_widens_float16_weights(artifacts, tmp_path):
    _, _, half = artifacts
    x = np.random.default_rng(4).standard_normal((1, 3, 12, 12)).astype(np.float32)
    assert np.array_equal(run_in_c(half, x, (1, 10), tmp_path), runtime.load(half).infer({"x": x})["y"])


def test_c_loader_widens_every_float16_value_exactly(tmp_path):
    """y = x + W with x = 0 and W every float16 value (subnormals, infinities, NaNs) as float32."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    node = helper.make_node("Add", ["x", "W"], ["y"])
    model = single_node_model(node, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1 << 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 16])],
                              initializer=[numpy_helper.from_array(every, "W")])
    with np.errstate(invalid="ignore"):  # the NaN patterns
        artifact = compiler.compile(model, "cpu", precision="fp16")
        zeros = np.zeros(1 << 16, np.float32)
        np.testing.assert_array_equal(run_in_c(artifact, zeros, (1 << 16,), tmp_path), every + zeros)
    assert artifact.manifest["weights_storage"]["weights"][0]["dtype"] == "float16"


def test_precision_errors(tmp_path):
    with pytest.raises(UnsupportedByTargetError, match="precision 'fp16' is compiled for the targets"):
        compiler.compile(conv_model(), "ref", precision="fp16")
    with pytest.raises(UnsupportedByTargetError, match="precision 'fp8' is not one of"):
        compiler.compile(conv_model(), "cpu", precision="fp8")
    with pytest.raises(UnsupportedByTargetError, match="this compile makes no report"):
        compiler.compile(conv_model(), "cpu", report=tmp_path / "r.json")


def test_cli_prints_and_writes_the_report(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(overflow_model(), model)
    report = tmp_path / "report.json"
    assert main(["compile", str(model), "--target", "cpu", "--precision", "fp16", "--calibration-size", "4",
                 "--report", str(report), "-o", str(tmp_path / "m.kiln")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "fp16 (cpu): weights 136 -> 68 bytes (0.50x); checked on 4 seeded random normal input(s)" in out
    assert "kept float32: node 'big' (MatMul): overflow: output 0 reaches" in out
    assert "output error vs float32: max abs" in out
    assert json.loads(report.read_text()) == json.loads((tmp_path / "m.kiln" / "report.json").read_text())
    np.save(tmp_path / "x.npy", np.ones((3, 8), np.float32))
    assert main(["compile", str(model), "--target", "cpu", "--precision", "fp16", "--calibration", str(tmp_path),
                 "-o", str(tmp_path / "n.kiln")]) == EXIT_ERROR
    assert "calibration input 'x' has shape [3, 8]; the model takes [2, 8]" in capsys.readouterr().err
