"""gpu TopK beside onnx.reference: largest and smallest, inner and outer axes, ties (lower index
first), integer input."""

import numpy as np
from onnx.reference import ReferenceEvaluator

from tests.gpu.harness import nodes_model, random, run_gpu


def test_top_k_matches_onnx_reference():
    feeds = {"x": np.round(random((4, 6, 5)) * 2) / 2, "n": np.array([[3, 1, 3, 2, 1, 3, 0]], np.int32)}
    constants = {"two": np.array([2], np.int64), "three": np.array([3], np.int64)}
    nodes = [("TopK", ["x", "three"], {}, 2), ("TopK", ["x", "two"], {"axis": 0, "largest": 0}, 2),
             ("TopK", ["x", "three"], {"axis": 1}, 2), ("TopK", ["n", "three"], {"largest": 0}, 2)]
    model = nodes_model(nodes, feeds, constants)
    expected = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))
    actual = run_gpu(model, feeds)
    for name, want in expected.items():
        assert actual[name].dtype == want.dtype and actual[name].shape == want.shape, name
        np.testing.assert_array_equal(actual[name], want, err_msg=name)
