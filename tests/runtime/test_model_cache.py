"""Model caching (compile(cache_dir=...), --cache-dir, $KILN_CACHE_DIR): a hit loads the stored
artifact byte for byte; each field of the key causes a miss that is logged by name; concurrent
compiles of one model store one entry."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

import compiler
import runtime
from compiler import cache
from compiler.cli import EXIT_OK, main
from tests.models.builders import mlp_model


def _compile(tmp_path, **options):
    return compiler.compile(mlp_model(batch=2).SerializeToString(), target="cpu", cache_dir=tmp_path, **options)


def _same(first, second) -> bool:
    return first.manifest_bytes() == second.manifest_bytes() and first.files == second.files


def test_a_hit_loads_the_stored_artifact(tmp_path, caplog, monkeypatch):
    first = _compile(tmp_path)
    monkeypatch.setattr("compiler.targets.cpu.CpuTarget.emit", lambda *a: pytest.fail("a hit must not compile"))
    with caplog.at_level(logging.INFO, logger="kiln.cache"):
        second = _compile(tmp_path)
    assert "cache hit" in caplog.text and _same(first, second)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(runtime.load(second).infer({"x": x})["y"], runtime.load(first).infer({"x": x})["y"])


@pytest.mark.parametrize("change, field", [
    ({"disable": ["fuse-epilogues"]}, "options"),
    ({"features": "+avx2,+fma"}, "options, machine"),  # the option is also what the machine is
])
def test_a_changed_field_is_a_logged_miss(tmp_path, caplog, change, field):
    _compile(tmp_path)
    with caplog.at_level(logging.INFO, logger="kiln.cache"):
        _compile(tmp_path, **change)
    assert f"cache miss: the closest entry differs in {field}" in caplog.text
    assert len(list((tmp_path / "artifacts").glob("*.json"))) == 2


def test_another_model_or_compiler_misses(tmp_path, caplog, monkeypatch):
    compiler.compile(mlp_model(batch=2), target="ref", cache_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="kiln.cache"):
        compiler.compile(mlp_model(batch=3), target="ref", cache_dir=tmp_path)
        monkeypatch.setattr(cache, "compiler_digest", lambda: "an edited compiler")
        compiler.compile(mlp_model(batch=3), target="ref", cache_dir=tmp_path)
    assert "differs in model" in caplog.text and "differs in compiler" in caplog.text


def test_concurrent_compiles_store_one_entry(tmp_path):
    results = []
    threads = [threading.Thread(target=lambda: results.append(_compile(tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and all(_same(results[0], r) for r in results[1:])
    entries = tmp_path / "artifacts"
    assert len(list(entries.glob("*.json"))) == 1 and not list(entries.glob(".*"))


def test_cli_cache_dir_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_model(batch=2).SerializeToString())
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    for output in ("a.kiln", "b.kiln"):
        assert main(["compile", str(path), "-t", "cpu", "-o", str(tmp_path / output), "--quiet"]) == EXIT_OK
    assert len(list((tmp_path / "cache" / "artifacts").glob("*.json"))) == 1
    assert (tmp_path / "a.kiln" / "model.so").read_bytes() == (tmp_path / "b.kiln" / "model.so").read_bytes()


def test_new_calibration_data_under_the_same_name_misses(tmp_path):
    """The key holds the calibration files' bytes, not only their path."""
    data = tmp_path / "calibration.npz"
    fields = []
    for seed in (0, 1):
        np.savez(data, x=np.random.default_rng(seed).standard_normal((4, 2, 4)).astype(np.float32))
        fields.append(cache.cache_fields(mlp_model(batch=2).SerializeToString(), "cpu", {"calibration": str(data)}))
    assert fields[0]["options"]["calibration"]["path"] == str(data)
    assert fields[0]["options"] != fields[1]["options"]
