"""Automatic batching: one-sample calls on an artifact compiled for batch 4 are gathered into batched
runs and each caller gets its own result."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
import runtime
from runtime.artifact_reader import ArtifactError
from tests.models.builders import mlp_model


@pytest.fixture(scope="module")
def batch_of_four():
    return compiler.compile(mlp_model(batch=4), target="cpu")


def test_concurrent_samples_run_as_batches(batch_of_four):
    model = runtime.load(batch_of_four, auto_batch=True, batch_timeout=0.05)
    assert model.inputs[0].shape == (1, 4) and model.outputs[0].shape == (1, 3)
    samples = np.random.default_rng(0).standard_normal((8, 1, 4)).astype(np.float32)
    single = runtime.load(compiler.compile(mlp_model(batch=1), target="cpu"))
    queue = model.create_async_queue(8)
    results = {}
    queue.set_callback(lambda request, index: results.__setitem__(index, request.results["y"]))
    for index, sample in enumerate(samples):
        queue.start_async({"x": sample}, index)
    queue.wait_all()
    for index, sample in enumerate(samples):
        np.testing.assert_allclose(results[index], single.infer({"x": sample})["y"], rtol=1e-6, atol=1e-6)
    assert model._batcher.calls < len(samples)


def test_a_lone_call_waits_at_most_the_timeout(batch_of_four):
    model = runtime.load(batch_of_four, auto_batch=True, batch_timeout=0.001)
    x = np.ones((1, 4), np.float32)
    assert model.infer({"x": x})["y"].shape == (1, 3) and model._batcher.calls == 1


def test_an_unbatched_artifact_is_refused():
    with pytest.raises(ArtifactError, match="batch of 2 or more"):
        runtime.load(compiler.compile(mlp_model(batch=1), target="cpu"), auto_batch=True)
