"""gpu pooling, reductions and softmax beside the ref target: one item per output for short rows,
a work group per output (local-memory combine) for long ones."""

import numpy as np

from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random

REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2",
          "ReduceLogSumExp"]


def test_pools():
    x, x1, x3 = random((2, 3, 9, 10)), random((1, 2, 11), seed=1), random((1, 2, 5, 6, 7), seed=2)
    feeds = {"x": x, "x1": x1, "x3": x3}
    nodes = [("MaxPool", ["x"], {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]}),
             ("MaxPool", ["x"], {"kernel_shape": [3, 3], "strides": [2, 2], "dilations": [2, 1]}, 2),
             ("MaxPool", ["x"], {"kernel_shape": [3, 3], "strides": [2, 2], "storage_order": 1}, 2),
             ("MaxPool", ["x1"], {"kernel_shape": [3], "strides": [2]}),
             ("MaxPool", ["x3"], {"kernel_shape": [2, 2, 3], "ceil_mode": 1, "strides": [2, 2, 2]}),
             ("AveragePool", ["x"], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
             ("AveragePool", ["x"], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1,
                                     "count_include_pad": 1}),
             ("AveragePool", ["x"], {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"}),
             ("AveragePool", ["x3"], {"kernel_shape": [3, 2, 2]}),
             ("LpPool", ["x"], {"kernel_shape": [2, 2], "p": 3}),
             ("GlobalAveragePool", ["x"], {}), ("GlobalMaxPool", ["x3"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, tolerance={"rtol": 1e-4, "atol": 1e-4})


def test_reductions_over_axes():
    x, long_rows = random((2, 3, 4, 5)), random((3, 5000), seed=1)
    positive = np.abs(x) + 0.1
    feeds = {"x": x, "long_rows": long_rows, "positive": positive}
    constants = {"a13": np.array([1, 3]), "a0": np.array([0]), "none": np.zeros(0, np.int64), "last": np.array([-1])}
    nodes = [(op, ["x", "a13"], {}) for op in REDUCE]
    nodes += [(op, ["long_rows", "last"], {"keepdims": 0}) for op in REDUCE]
    nodes += [("ReduceSum", ["x"], {"keepdims": 0}), ("ReduceMax", ["x", "a0"], {}),
              ("ReduceSum", ["x", "none"], {"noop_with_empty_axes": 1}), ("ReduceLogSum", ["positive", "a13"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants), feeds, tolerance={"rtol": 1e-4, "atol": 1e-3})


def test_integer_reductions():
    x = random((3, 4, 6), np.int32)
    feeds = {"x": x}
    nodes = [(op, ["x", "axes"], {}) for op in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, {"axes": np.array([0, 2])}), feeds, exact=True)


def test_softmax_and_log_softmax_axes():
    x, long_rows = random((2, 3, 4, 5)), random((3, 5000), seed=1) * 10
    feeds = {"x": x, "long_rows": long_rows}
    nodes = [(op, ["x"], {"axis": axis}) for op in ("Softmax", "LogSoftmax") for axis in (-1, 1, 0)]
    nodes += [(op, ["long_rows"], {"axis": 1}) for op in ("Softmax", "LogSoftmax")]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, opset=13), feeds, tolerance={"rtol": 1e-4, "atol": 1e-6})


def test_arg_max_and_min_first_or_last_index():
    x = np.array([[1.0, 3.0, 3.0, -2.0], [np.nan, 0.0, np.nan, 5.0], [2.0, 2.0, 2.0, 2.0]], np.float32)
    i = random((3, 4, 5), np.int32)
    feeds = {"x": x, "i": i}
    nodes = [(op, ["x"], {"axis": axis, "select_last_index": last, "keepdims": keep})
             for op in ("ArgMax", "ArgMin") for axis in (0, 1) for last in (0, 1) for keep in (0, 1)]
    nodes += [("ArgMax", ["i"], {"axis": -1}), ("ArgMin", ["i"], {"axis": 1, "keepdims": 0})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, exact=True)
