"""bench/trained_models.py's torch-free parts: the graph it trains is the benchmark's own, and its
labelled inputs fit the graph. (Training itself needs torch and checks itself against onnxruntime.)"""

from __future__ import annotations

import numpy as np
import pytest

from bench.compare import light_model
from bench.synthetic_images import CLASSES
from bench.trained_models import architecture, labelled_inputs


def test_folded_light_resnet50_is_the_same_graph_with_initializer_weights():
    ort = pytest.importorskip("onnxruntime")
    original = light_model("light_resnet50").model
    folded = architecture("light_resnet50")
    assert [n.op_type for n in folded.graph.node] == [n.op_type for n in original.graph.node
                                                      if n.op_type != "ConstantOfShape"]
    feeds, labels = labelled_inputs(folded)(np.random.default_rng(0))
    assert labels.shape == (1,) and 0 <= labels[0] < len(CLASSES)
    outputs = [ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
               for model in (original, folded)]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_labelled_inputs_draw_images_at_the_models_input_shape():
    feeds, labels = labelled_inputs(architecture("mobilenet_v2"))(np.random.default_rng(0))
    assert list(feeds) == ["input"] and feeds["input"].shape == (1, 3, 224, 224)
    assert feeds["input"].dtype == np.float32 and labels.dtype == np.int64
