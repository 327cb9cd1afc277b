"""examples/c/run_model.c runs a cpu artifact with no Python and matches the Python runtime."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

import compiler
import runtime
from compiler.codegen.llvm.linker import find_c_compiler
from tests.codegen.test_precompute import fill_model
from tests.models.builders import mlp_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "c" / "run_model.c"


def build(artifact, tmp_path):
    """(artifact directory, path of run_model built against it)."""
    directory = artifact.save(tmp_path / "model.kiln")
    binary = tmp_path / "run_model"
    subprocess.run([find_c_compiler(), "-O2", "-I", str(directory), str(EXAMPLE), str(directory / "model.so"),
                    f"-Wl,-rpath,{directory}", "-o", str(binary)], check=True, capture_output=True)
    return directory, binary


@pytest.fixture
def program(tmp_path):
    return build(compiler.compile(mlp_model(batch=3), target="cpu"), tmp_path)


def run(binary, artifact, tmp_path, outputs=("y.bin",)):
    return subprocess.run([str(binary), str(artifact / "weights.bin"), str(tmp_path / "x.bin"),
                           *[str(tmp_path / name) for name in outputs]], capture_output=True, text=True)


def test_c_program_matches_python_runtime(program, tmp_path):
    artifact, binary = program
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    result = run(binary, artifact, tmp_path)
    assert result.returncode == 0, result.stderr
    from_c = np.fromfile(tmp_path / "y.bin", dtype=np.float32).reshape(3, 3)
    assert np.array_equal(from_c, runtime.load(artifact).infer({"x": x})["y"])


def test_c_program_rejects_a_short_input_file(program, tmp_path):
    artifact, binary = program
    (tmp_path / "x.bin").write_bytes(b"\0" * 8)
    result = run(binary, artifact, tmp_path)
    assert result.returncode == 2 and "exactly 48 bytes" in result.stderr


def test_c_program_precomputes_constant_only_values(tmp_path):
    artifact, binary = build(compiler.compile(fill_model(), "cpu", disable=["fold-constants"]), tmp_path)
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    result = run(binary, artifact, tmp_path, outputs=("y.bin", "z.bin"))
    assert result.returncode == 0, result.stderr
    expected = runtime.load(artifact).infer({"x": x})
    assert np.array_equal(np.fromfile(tmp_path / "y.bin", dtype=np.float32).reshape(3, 4), expected["y"])
    assert np.array_equal(np.fromfile(tmp_path / "z.bin", dtype=np.float32).reshape(4, 6), expected["z"])
