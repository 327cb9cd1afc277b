"""gpu EyeLike, OneHot, ReverseSequence and GatherND beside onnx.reference: negative indices,
batch dims, axes other than the default, float indices."""

import numpy as np
from onnx.reference import ReferenceEvaluator

from tests.gpu.harness import nodes_model, random, run_gpu


def _assert_matches_reference(model, feeds: dict) -> None:
    expected = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))
    actual = run_gpu(model, feeds)
    for name, want in expected.items():
        assert actual[name].dtype == want.dtype and actual[name].shape == want.shape, name
        np.testing.assert_array_equal(actual[name], want, err_msg=name)


def test_eye_like_and_one_hot():
    feeds = {"square": random((4, 6)), "wide": np.zeros((3, 5), np.int32),
             "indices": np.array([[0, -1, 3], [9, 2, -4]], np.int64),
             "float_indices": np.array([1.0, -2.0, 0.0], np.float32)}
    constants = {"depth": np.array(4, np.int64), "values": np.array([-1.5, 2.5], np.float32),
                 "int_values": np.array([0, 7], np.int32)}
    nodes = [("EyeLike", ["square"], {}), ("EyeLike", ["square"], {"k": 2}), ("EyeLike", ["wide"], {"k": -1}),
             ("EyeLike", ["wide"], {"dtype": 9}),
             ("OneHot", ["indices", "depth", "values"], {}), ("OneHot", ["indices", "depth", "int_values"], {"axis": 0}),
             ("OneHot", ["float_indices", "depth", "values"], {"axis": -2})]
    _assert_matches_reference(nodes_model(nodes, feeds, constants), feeds)


def test_reverse_sequence_and_gather_nd():
    data = random((3, 4, 5))
    feeds = {"x": data, "lengths": np.array([4, 1, 0, 3, 2], np.int64),
             "batch_lengths": np.array([2, 5, 3], np.int64),
             "pairs": np.array([[0, 1], [-1, -2], [2, 0]], np.int64),
             "batched": np.array([[[1], [-1]], [[0], [3]], [[2], [2]]], np.int64)}
    nodes = [("ReverseSequence", ["x", "lengths"], {"batch_axis": 2, "time_axis": 1}),
             ("ReverseSequence", ["x", "batch_lengths"], {"batch_axis": 0, "time_axis": 2}),
             ("GatherND", ["x", "pairs"], {}), ("GatherND", ["x", "batched"], {"batch_dims": 1})]
    _assert_matches_reference(nodes_model(nodes, feeds), feeds)
