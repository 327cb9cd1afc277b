"""The nine light model-zoo models on the gpu target (fused, on PoCL here) match ONNX Runtime within
rtol 1e-3 / atol 1e-4, by the same check the other targets pass (tests/models/test_light_model_zoo.py)."""

import pytest

import tests.models.test_light_model_zoo as zoo


@pytest.mark.parametrize("name", zoo.MODELS)
def test_matches_onnxruntime(name):
    zoo.test_matches_onnxruntime(name, "gpu")
