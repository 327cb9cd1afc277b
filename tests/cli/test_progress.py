"""Compile progress (per pass, per stage, per kernel, then a summary), --quiet, --verbose decisions,
and no print() in library code (it logs under the `kiln` logger namespace)."""

from __future__ import annotations

import ast
import io
import logging
from pathlib import Path

import compiler
from compiler.cli import EXIT_OK, main
from compiler.targets.base import get_target
from tests.models.builders import mlp_model

ROOT = Path(__file__).resolve().parents[2]


def test_progress_lines_when_not_a_terminal():
    stream = io.StringIO()
    compiler.compile(mlp_model(batch=2), target="cpu", progress=stream)
    text = stream.getvalue()
    passes = len(get_target("cpu").pipeline({}))
    assert "kiln: pass 1/" in text and "fuse-epilogues" in text
    assert "kiln: kernels: kernel 1/1" in text and "kiln: llvm:" in text and "kiln: link:" in text
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("kiln: compiled in") and "slowest:" in summary and "llvm" in summary
    assert f"pass {passes}/{passes}" in text


def test_quiet_compile_prints_nothing(tmp_path, capsys):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_model(batch=2).SerializeToString())
    assert main(["compile", str(path), "-t", "cpu", "-o", str(tmp_path / "m.kiln"), "--quiet"]) == EXIT_OK
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_logs_fusion_decisions(caplog):
    with caplog.at_level(logging.INFO, logger="kiln"):
        compiler.compile(mlp_model(batch=2), target="cpu")
    assert "fuse-epilogues: matmul, add, relu fused into one FusedMatMul kernel" in caplog.text


def test_library_code_never_prints():
    offenders = []
    for package in ("compiler", "runtime", "frontends"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "cli.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"library code prints instead of logging: {offenders}"
