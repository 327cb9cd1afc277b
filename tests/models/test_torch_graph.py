"""bench/torch_graph.py, PyTorch eager peer of the gpu benchmark: it computes what onnxruntime does on the
benchmark models. (Needs torch, the `train` extra; skipped without it.)"""

from __future__ import annotations

import numpy as np
import pytest

from bench.models import bert_encoder, mobilenet_v2


@pytest.mark.parametrize("build", [bert_encoder, mobilenet_v2], ids=["bert_encoder", "mobilenet_v2"])
def test_torch_interpretation_matches_onnxruntime(build):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from bench.torch_graph import OnnxModule

    bench = build()
    feeds = bench.make_inputs(np.random.default_rng(0))
    module = OnnxModule(bench.model).eval()
    with torch.inference_mode():
        ours = module({name: torch.from_numpy(value) for name, value in feeds.items()}).numpy()
    session = ort.InferenceSession(bench.model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(ours, session.run(None, feeds)[0], rtol=1e-4, atol=1e-4)
