"""Artifacts on disk: save/load, determinism, damage detection, input validation, runtime isolation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import compiler
import runtime
from runtime import ArtifactError, InputError
from tests.models.builders import mlp_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def saved(tmp_path):
    return compiler.compile(mlp_model()).save(tmp_path / "mlp.kiln")


def test_saved_artifact_runs_like_the_model(saved):
    import onnxruntime

    model = runtime.load(saved)
    assert [(i.name, i.dtype, i.shape) for i in model.inputs] == [("x", "float32", ("N", 4))]
    assert [(o.name, o.shape) for o in model.outputs] == [("y", ("N", 3))]
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    expected = onnxruntime.InferenceSession(mlp_model().SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(model.infer({"x": x})["y"], expected, rtol=1e-5, atol=1e-6)


def test_compiling_twice_gives_identical_bytes(tmp_path):
    first = compiler.compile(mlp_model()).save(tmp_path / "a.kiln")
    second = compiler.compile(mlp_model()).save(tmp_path / "b.kiln")
    names = sorted(p.name for p in first.iterdir())
    assert names == ["graph.json", "manifest.json", "weights.bin"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_damaged_payload_is_refused(saved):
    weights = saved / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        runtime.load(saved)
    weights.write_bytes(bytes(data[:-1]))
    with pytest.raises(ArtifactError, match="bytes, the manifest says"):
        runtime.load(saved)


def test_large_weights_are_hashed_only_on_request(saved, monkeypatch):
    from runtime import artifact_reader

    monkeypatch.setattr(artifact_reader, "ALWAYS_HASHED_BYTES", 0)
    weights = saved / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.write_bytes(bytes(data))
    runtime.load(saved)  # same size: not hashed
    with pytest.raises(ArtifactError, match="checksum"):
        runtime.load(saved, verify_all=True)


def test_unknown_format_version_is_refused(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["format_version"] = 99
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 99"):
        runtime.load(saved)


def test_missing_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="manifest.json"):
        runtime.load(tmp_path / "nothing.kiln")


@pytest.mark.parametrize("feeds, message", [
    ({}, r"missing \['x'\]"),
    ({"x": np.zeros((1, 4), np.float32), "extra": np.zeros(1)}, r"unknown \['extra'\]"),
    ({"x": np.zeros((1, 4), np.float64)}, "dtype float64, the model expects float32"),
    ({"x": np.zeros((4,), np.float32)}, "rank 1"),
    ({"x": np.zeros((2, 5), np.float32)}, "axis 1 must be 4"),
])
def test_bad_inputs_are_refused_before_running(saved, feeds, message):
    with pytest.raises(InputError, match=message):
        runtime.load(saved).infer(feeds)


def test_importing_the_runtime_pulls_in_no_compiler_modules():
    code = ("import sys, runtime; bad = [m for m in ('compiler', 'frontends', 'networkx', 'onnx', 'llvmlite', "
            "'jinja2') if m in sys.modules]; print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
