"""The light model-zoo models shipped in the onnx wheel import and run on each target, matching
ONNX Runtime within rtol 1e-3 / atol 1e-4 on seeded random inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import compiler
import runtime

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = sorted(p.stem for p in LIGHT_DIR.glob("light_*.onnx"))


def test_all_nine_models_are_found():
    assert len(MODELS) == 9, MODELS


@pytest.mark.parametrize("target", ["ref", "cpu"])
@pytest.mark.parametrize("name", MODELS)
def test_matches_onnxruntime(name, target):
    ort = pytest.importorskip("onnxruntime")
    path = str(LIGHT_DIR / f"{name}.onnx")
    model = runtime.load(compiler.compile(path, target=target))
    rng = np.random.default_rng(0)
    feeds = {info.name: rng.standard_normal(info.shape).astype(np.float32) for info in model.inputs}
    ours = model.infer(feeds)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    for info, reference in zip(model.outputs, expected):
        np.testing.assert_allclose(ours[info.name], reference, rtol=1e-3, atol=1e-4, err_msg=f"{name} {info.name}")
