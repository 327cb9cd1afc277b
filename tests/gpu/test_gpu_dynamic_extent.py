"""One gpu artifact for bounded dynamic extents (compiler/dynamic_extent.py), a sequence length or an image's
height and width: kernels run at the bounds, the masks read the sizes from the runtime's extent buffer, and
every shape in the bounds matches ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import compiler
import runtime
from bench.models import bert_encoder
from tests.runtime.test_dynamic_extent import _model, _session
from tests.runtime.test_dynamic_resolution import _check, _cnn

RNG = np.random.default_rng(0)


def test_encoder_matches_onnxruntime_at_every_batch_and_length():
    encoder = bert_encoder(layers=1, dynamic=True)
    model = runtime.load(compiler.compile(encoder.model, target="gpu", shapes={
        "input_ids": ["1..2", "1..32"], "attention_mask": ["1..2", "1..32"]}))
    assert model.inputs[0].shape == ("batch", "sequence") and model.inputs[0].bounds == ((1, 2), (1, 32))
    session = _session(encoder.model)
    for batch, length in ((1, 32), (2, 7), (1, 19), (2, 32)):
        feeds = encoder.make_inputs(np.random.default_rng(length), batch=batch, sequence=length)
        feeds["attention_mask"][:] = 1.0  # only the masks hide the padding
        got = next(iter(model.infer(feeds).values()))
        assert got.shape == (batch, length, 256)
        np.testing.assert_allclose(got, session.run(None, feeds)[0], rtol=1e-3, atol=1e-4)


def test_a_softmax_and_a_sum_over_the_length():
    model = _model([helper.make_node("Softmax", ["x"], ["p"], axis=1),
                    helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
                    helper.make_node("Add", ["p", "s"], ["y"])], {"axes": np.array([1], np.int64)})
    executable = runtime.load(compiler.compile(model, target="gpu", shapes={"x": [2, "1..9", 4]}))
    for length in (9, 3, 1):
        x = RNG.standard_normal((2, length, 4)).astype(np.float32)
        expected = np.exp(x) / np.exp(x).sum(1, keepdims=True) + x.sum(1, keepdims=True)
        np.testing.assert_allclose(executable.infer({"x": x})["y"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dense", [False, True], ids=["classifier", "dense"])
def test_a_cnn_with_dynamic_batch_and_size(dense):
    _check(_cnn(dense), "gpu")


def test_launches_walking_positions_shrink_with_a_single_sequence():
    """Kernels whose work walks the output in order (elementwise ones here) launch, for a batch of one
    sequence of 8 positions out of 32, an eighth of their groups (one of two entries, a quarter of its
    positions); with two sequences (two groups of positions) they launch all."""
    from runtime.gpu import _cut_to_extent

    encoder = bert_encoder(layers=1, dynamic=True)
    artifact = compiler.compile(encoder.model, target="gpu", shapes={
        "input_ids": ["1..2", "1..32"], "attention_mask": ["1..2", "1..32"]})
    ruled = [(tuple(step["global"]), tuple(step["local"]), step["extent"])
             for step in artifact.manifest["launches"] if "extent" in step]
    assert all(_cut_to_extent(full, local, rule, 2, 8) == full for full, local, rule in ruled)
    cut = [(full, _cut_to_extent(full, local, rule, 1, 8)) for full, local, rule in ruled]
    assert all(small <= large for full, shrunk in cut for small, large in zip(shrunk, full))
    assert any(shrunk[0] * 8 == full[0] for full, shrunk in cut)
