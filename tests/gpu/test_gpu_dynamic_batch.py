"""One gpu artifact for a bounded dynamic batch: every batch size in the bounds matches ONNX Runtime, the
launches whose work walks the batch shrink with it, stale entries past the batch stay apart, and an
unbounded batch runs chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
import runtime
from compiler.dynamic_batch import UNBOUNDED_CHUNK
from runtime.gpu import _shrunk
from tests.runtime.test_dynamic_batch import (_cnn, _session, assert_encoder_matches_onnxruntime,  # noqa: F401
                                              encoder)  # encoder: a fixture

RNG = np.random.default_rng(0)
ENCODER_SHAPES = {"input_ids": ["1..4", 16], "attention_mask": ["1..4", 16]}


@pytest.fixture(scope="module")
def encoder_artifact(encoder):
    return compiler.compile(encoder.model, target="gpu", shapes=ENCODER_SHAPES)


def test_encoder_matches_onnxruntime_at_every_batch_size(encoder, encoder_artifact):
    model = runtime.load(encoder_artifact)
    assert model.inputs[0].shape == ("batch", 16) and model.inputs[0].bounds == ((1, 4), None)
    assert_encoder_matches_onnxruntime(encoder, model)


def test_the_encoders_launches_shrink_with_the_batch(encoder_artifact):
    """Every GEMM, elementwise and reduction launch walks the batch outermost; at batch 1 of 4 each runs
    about a quarter of its work groups (whole groups: a row tile may straddle two entries)."""
    launches = [step for step in encoder_artifact.manifest["launches"] if "kernel" in step]
    shrinking = [step for step in launches if "batch" in step]
    assert {step["op_type"] for step in shrinking} >= {"kiln::FusedMatMul", "MatMul", "kiln::FusedElementwise",
                                                      "Softmax"}
    assert len(shrinking) >= 0.7 * len(launches)
    for step in shrinking:
        rule, axis = step["batch"], step["batch"]["axis"]
        groups = step["global"][axis] // step["local"][axis]
        one = _shrunk(tuple(step["global"]), tuple(step["local"]), rule, 1)[axis] // step["local"][axis]
        assert _shrunk(tuple(step["global"]), tuple(step["local"]), rule, 4) == tuple(step["global"])
        assert one <= groups // 4 + 1, step["kernel"]


def test_stale_entries_past_the_batch_do_not_reach_the_first_ones():
    """A batch of 4 with NaN in its last entries, then a batch of 2: the device buffers still hold the NaN
    entries, which the kernels that run every group compute apart."""
    model = _cnn()
    executable, session = runtime.load(compiler.compile(model, target="gpu", shapes={"x": ["1..4", 3, 12, 12]})), \
        _session(model)
    x = RNG.standard_normal((4, 3, 12, 12)).astype(np.float32)
    x[2:] = np.nan
    assert np.isnan(executable.infer({"x": x})["y"][2:]).all()
    for batch in (2, 1, 3):
        part = RNG.standard_normal((batch, 3, 12, 12)).astype(np.float32)
        np.testing.assert_allclose(executable.infer({"x": part})["y"], session.run(None, {"x": part})[0],
                                   rtol=1e-4, atol=1e-6)


def test_an_unbounded_batch_runs_in_chunks():
    model = _cnn()
    executable, session = runtime.load(compiler.compile(model, target="gpu", shapes={"x": ["1..", 3, 12, 12]})), \
        _session(model)
    assert executable.manifest["dynamic_batch"]["chunk"] == UNBOUNDED_CHUNK
    for batch in (3, 2 * UNBOUNDED_CHUNK + 1):
        x = RNG.standard_normal((batch, 3, 12, 12)).astype(np.float32)
        got = executable.infer({"x": x})["y"]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, session.run(None, {"x": x})[0], rtol=1e-4, atol=1e-6)
