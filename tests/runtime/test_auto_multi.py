"""auto:gpu,cpu and multi:gpu,cpu artifacts: AUTO picks the best target present (serving on the cpu
build while the gpu program builds), MULTI spreads calls over every build; both match the ref target."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import compiler
import runtime
from compiler.driver import UnsupportedByTargetError
from tests.models.builders import mlp_model, relu_det_neg

pytest.importorskip("pyopencl")
X = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)


@pytest.fixture(autouse=True)
def _private_program_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def expected():
    return runtime.load(compiler.compile(mlp_model(batch=3), "ref")).infer({"x": X})["y"]


def test_auto_serves_on_cpu_until_the_gpu_program_is_built(expected, caplog):
    artifact = compiler.compile(mlp_model(batch=3), "auto:gpu,cpu")
    assert [part["target"] for part in artifact.manifest["parts"]] == ["gpu", "cpu"]
    with caplog.at_level(logging.INFO, logger="kiln.runtime.auto"):
        model = runtime.load(artifact)
        np.testing.assert_allclose(model.infer({"x": X})["y"], expected, rtol=1e-5, atol=1e-6)
        assert model._executor.ready.wait(60) and model._executor.device == "gpu"
    assert "requests run on the cpu build until the gpu program is built" in caplog.text
    assert "requests now run on the gpu build" in caplog.text
    np.testing.assert_allclose(model.infer({"x": X})["y"], expected, rtol=1e-5, atol=1e-6)


def test_auto_without_an_opencl_device_runs_the_cpu_build(expected, monkeypatch):
    monkeypatch.setattr("runtime.auto._present", lambda target: target != "gpu")
    model = runtime.load(compiler.compile(mlp_model(batch=3), "auto:gpu,cpu"))
    assert model._executor.device == "cpu"
    np.testing.assert_allclose(model.infer({"x": X})["y"], expected, rtol=1e-5, atol=1e-6)


def test_multi_spreads_calls_over_the_builds(expected):
    model = runtime.load(compiler.compile(mlp_model(batch=3), "multi:gpu,cpu"))
    results = [model.infer({"x": X})["y"] for _ in range(4)]
    assert model._executor.devices == ["gpu", "cpu"] and model._executor.calls == [2, 2]
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_every_listed_target_must_compile_the_model():
    with pytest.raises(UnsupportedByTargetError, match="gpu: no gpu kernel for Det"):
        compiler.compile(relu_det_neg(), "auto:gpu,cpu")
