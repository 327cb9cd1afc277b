"""The hetero target (hetero:gpu,cpu): nodes go to the first target that runs them, consecutive nodes
form parts, and the joined artifact matches the ref target; bad target lists are usage errors."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
import runtime
from compiler.cli import EXIT_ERROR, EXIT_OK, main
from tests.models.builders import relu_det_neg

pytest.importorskip("pyopencl")


@pytest.fixture(autouse=True)
def _private_program_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


def test_parts_by_support_and_priority():
    artifact = compiler.compile(relu_det_neg(), "hetero:gpu,cpu")
    parts = [(part["target"], part["inputs"], part["outputs"]) for part in artifact.manifest["parts"]]
    assert parts == [("gpu", ["x"], ["r"]), ("cpu", ["r"], ["d"]), ("gpu", ["d"], ["y"])]
    x = np.random.default_rng(0).standard_normal((2, 3, 3)).astype(np.float32)
    expected = runtime.load(compiler.compile(relu_det_neg(), "ref")).infer({"x": x})["y"]
    np.testing.assert_allclose(runtime.load(artifact).infer({"x": x})["y"], expected, rtol=1e-5, atol=1e-6)
    cpu_first = compiler.compile(relu_det_neg(), "hetero:cpu,gpu")
    assert [part["target"] for part in cpu_first.manifest["parts"]] == ["cpu"]


def test_cli(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(relu_det_neg().SerializeToString())
    assert main(["compile", str(path), "-t", "hetero:gpu,cpu", "-o", str(tmp_path / "m.kiln"), "--quiet"]) == EXIT_OK
    assert runtime.load(tmp_path / "m.kiln").target == "hetero"
    capsys.readouterr()
    assert main(["info", str(tmp_path / "m.kiln")]) == EXIT_OK
    assert "part   1 on cpu: reads r; writes d" in capsys.readouterr().out
    for bad in ("hetero", "hetero:gpu,gpu", "hetero:tpu"):
        with pytest.raises(SystemExit) as stop:
            main(["compile", str(path), "-t", bad, "-o", str(tmp_path / "x.kiln")])
        assert stop.value.code == EXIT_ERROR
    assert "unknown target 'tpu'" in capsys.readouterr().err
