"""gpu ScatterElements, Scatter and ScatterND beside the ref target (onnx.reference): every
reduction, negative and duplicate indices, float and integer data."""

import numpy as np

from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random


def test_scatter_elements_every_reduction_and_axis():
    data, updates = random((3, 4)), random((2, 3), seed=1)
    idata, iupdates = random((3, 4), np.int32, seed=2), random((2, 3), np.int32, seed=3)
    feeds = {"data": data, "updates": updates, "idata": idata, "iupdates": iupdates}
    constants = {"rows": np.array([[0, -1, 0], [2, 1, 0]], np.int64),  # duplicate target (0, 0)
                 "cols": np.array([[3, 0, -4], [1, 1, 2]], np.int32)}
    nodes = [("ScatterElements", ["data", "rows", "updates"], {}),
             ("ScatterElements", ["data", "cols", "updates"], {"axis": 1}),
             *[("ScatterElements", ["data", "rows", "updates"], {"reduction": r}) for r in ("add", "mul", "max", "min")],
             ("ScatterElements", ["idata", "cols", "iupdates"], {"axis": -1, "reduction": "add"}),
             ("ScatterElements", ["idata", "rows", "iupdates"], {"reduction": "none"})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants), feeds, tolerance={"rtol": 1e-6, "atol": 1e-6})


def test_deprecated_scatter():
    feeds = {"data": random((3, 3)), "updates": random((2, 3), seed=1)}
    constants = {"indices": np.array([[1, 0, 2], [0, 2, 1]], np.int64)}
    assert_gpu_matches_ref(nodes_model([("Scatter", ["data", "indices", "updates"], {})], feeds, constants, opset=10),
                           feeds, exact=True)


def test_scatter_nd_slices_elements_and_reductions():
    data, data3 = random((4, 5)), random((2, 3, 4), seed=1)
    feeds = {"data": data, "data3": data3, "rows": random((3, 5), seed=2), "points": random((3,), seed=3),
             "plane": random((2, 4), seed=4)}
    constants = {"row_index": np.array([[1], [-1], [1]], np.int64), "point_index": np.array([[0, 0], [3, 4], [0, 0]]),
                 "plane_index": np.array([[1, 2], [0, -1]], np.int64)}
    nodes = [("ScatterND", ["data", "row_index", "rows"], {"reduction": "add"}),
             ("ScatterND", ["data", "point_index", "points"], {"reduction": "mul"}),
             ("ScatterND", ["data", "point_index", "points"], {"reduction": "max"}),
             ("ScatterND", ["data3", "plane_index", "plane"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants), feeds, tolerance={"rtol": 1e-6, "atol": 1e-6})
