"""`kiln compile --precision int8`: the table, the report file, the warning without data, clean errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx

import runtime
from compiler.cli import EXIT_ERROR, EXIT_OK, main
from tests.quantization.models import conv_relu_matmul, samples


def _model(tmp_path) -> str:
    path = tmp_path / "model.onnx"
    onnx.save(conv_relu_matmul(), path)
    return str(path)


def test_compile_int8_prints_the_table_and_writes_the_report(tmp_path, capsys):
    model = _model(tmp_path)
    np.savez(tmp_path / "calibration.npz", **samples(conv_relu_matmul(), count=6))
    artifact, report = tmp_path / "m.kiln", tmp_path / "report.json"
    assert main(["compile", model, "-t", "cpu", "-o", str(artifact), "--precision", "int8", "--calibration",
                 str(tmp_path / "calibration.npz"), "--calibration-size", "5", "--calibration-method", "percentile",
                 "--calibration-percentile", "99.9", "--report", str(report)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "int8: 2 nodes quantized; ranges by percentile over 5 sample(s)" in out
    assert "local SQNR dB" in out and "output y: max abs error" in out
    stored = json.loads(report.read_text())
    assert stored == json.loads((artifact / "report.json").read_text())
    assert stored["calibration"]["percentile"] == 99.9
    x = samples(conv_relu_matmul(), seed=4)["x"][0]
    assert runtime.load(artifact).infer({"x": x})["y"].shape == (1, 8, 8, 5)


def test_without_calibration_data_it_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="kiln.quantization"):
        assert main(["compile", _model(tmp_path), "-t", "ref", "-o", str(tmp_path / "m.kiln"), "--precision", "int8",
                     "-q"]) == EXIT_OK
    assert "ranges come from 16 seeded random inputs and are a guess" in caplog.text


def test_unknown_ignore_name_is_one_line(tmp_path, capsys):
    assert main(["compile", _model(tmp_path), "-o", str(tmp_path / "m.kiln"), "--precision", "int8",
                 "--ignore", "conv", "rellu"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("kiln compile: error: ignore names node(s) not in graph")
    assert "'rellu': close names ['relu']" in err
    assert "Traceback" not in err


def test_missing_calibration_input_is_one_line(tmp_path, capsys):
    np.savez(tmp_path / "wrong.npz", image=np.zeros((2, 1, 3, 8, 8), np.float32))
    assert main(["compile", _model(tmp_path), "-o", str(tmp_path / "m.kiln"), "--precision", "int8",
                 "--calibration", str(tmp_path / "wrong.npz")]) == EXIT_ERROR
    assert "has no samples for input(s) ['x'] (it holds ['image'])" in capsys.readouterr().err
