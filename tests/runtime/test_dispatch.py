"""Artifacts compiled for several input shapes (specialize=, --specialize) and dispatched by shape:
each part matches ONNX Runtime; the signature shows the varying dims with their bounds; shapes
outside the parts are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
import runtime
from bench.models import bert_encoder
from compiler.cli import EXIT_OK, main
from compiler.dispatch import DispatchError
from runtime import InputError

SHAPES = [(1, 16), (2, 32)]


@pytest.fixture(scope="module")
def encoder():
    return bert_encoder(layers=1, dynamic=True)


@pytest.fixture(scope="module")
def artifact(encoder):
    return compiler.compile(encoder.model, target="cpu", specialize=[
        {"input_ids": list(shape), "attention_mask": list(shape)} for shape in SHAPES])


def test_each_part_matches_onnxruntime(encoder, artifact, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(encoder.model.SerializeToString(), providers=["CPUExecutionProvider"])
    model = runtime.load(artifact.save(tmp_path / "encoder.kiln"), num_threads=2)
    for batch, sequence in SHAPES:
        feeds = encoder.make_inputs(np.random.default_rng(batch), batch=batch, sequence=sequence)
        expected = session.run(None, feeds)[0]
        np.testing.assert_allclose(next(iter(model.infer(feeds).values())), expected, rtol=1e-3, atol=1e-4)


def test_signature_shows_dynamic_dims_and_bounds(artifact):
    model = runtime.load(artifact)
    ids = next(info for info in model.inputs if info.name == "input_ids")
    assert ids.shape == ("batch", "sequence") and ids.bounds == ((1, 2), (16, 32))
    assert model.outputs[0].shape[:2] == ("batch", "sequence") and model.outputs[0].bounds[2] is None


def test_shapes_without_a_part_are_clear_errors(encoder, artifact):
    model = runtime.load(artifact)
    with pytest.raises(InputError, match="no part of this artifact was compiled for input shapes .*1x24"):
        model.infer(encoder.make_inputs(np.random.default_rng(0), batch=1, sequence=24))
    with pytest.raises(InputError, match=r"axis 1 \(sequence\) is 64, outside the sizes 16\.\.32"):
        model.infer(encoder.make_inputs(np.random.default_rng(0), batch=1, sequence=64))


def test_bad_specialisations(encoder):
    with pytest.raises(DispatchError, match="same shapes twice"):
        compiler.compile(encoder.model, target="ref", specialize=[{"input_ids": [1, 8], "attention_mask": [1, 8]}] * 2)
    with pytest.raises(DispatchError, match="does not combine with shapes="):
        compiler.compile(encoder.model, target="ref", shapes={"input_ids": [1, 8]},
                         specialize=[{"input_ids": [1, 8], "attention_mask": [1, 8]}])


def test_cli_specialize(encoder, tmp_path):
    path = tmp_path / "encoder.onnx"
    path.write_bytes(encoder.model.SerializeToString())
    output = tmp_path / "encoder.kiln"
    assert main(["compile", str(path), "-t", "ref", "-o", str(output), "--quiet",
                 "--specialize", "input_ids=1,8", "attention_mask=1,8",
                 "--specialize", "input_ids=1,12", "attention_mask=1,12"]) == EXIT_OK
    model = runtime.load(output)
    assert model.target == "dispatch" and model.inputs[0].bounds == (None, (8, 12))
    feeds = encoder.make_inputs(np.random.default_rng(0), batch=1, sequence=12)
    assert next(iter(model.infer(feeds).values())).shape == (1, 12, 256)
