"""The models bench/models.py builds (MobileNetV2, the BERT-style encoder) are valid ONNX and run on
the cpu target matching ONNX Runtime within rtol 1e-3 / atol 1e-4."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import compiler
import runtime
from bench.models import bert_encoder, mobilenet_v2


def _check_against_onnxruntime(bench, feeds, **options):
    ort = pytest.importorskip("onnxruntime")
    onnx.checker.check_model(bench.model, full_check=True)
    ours = runtime.load(compiler.compile(bench.model, target="cpu", **options)).infer(feeds)
    session = ort.InferenceSession(bench.model.SerializeToString(), providers=["CPUExecutionProvider"])
    for output, reference in zip(session.get_outputs(), session.run(None, feeds)):
        np.testing.assert_allclose(ours[output.name], reference, rtol=1e-3, atol=1e-4, err_msg=bench.name)


def test_mobilenet_v2_matches_onnxruntime():
    bench = mobilenet_v2(resolution=96, classes=10)
    _check_against_onnxruntime(bench, bench.make_inputs(np.random.default_rng(0)))


def test_bert_encoder_matches_onnxruntime_with_a_padding_mask():
    bench = bert_encoder(sequence=32, layers=2)
    feeds = bench.make_inputs(np.random.default_rng(0))
    assert feeds["attention_mask"].min() == 0.0
    _check_against_onnxruntime(bench, feeds)


def test_dynamic_bert_encoder_compiles_for_a_given_shape():
    bench = bert_encoder(layers=1, dynamic=True)
    feeds = bench.make_inputs(np.random.default_rng(0), batch=2, sequence=16)
    _check_against_onnxruntime(bench, feeds, shapes={"input_ids": [2, 16], "attention_mask": [2, 16]})
