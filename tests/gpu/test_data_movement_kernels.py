"""gpu data movement beside the ref target: box copies, gathers that clamp bad indices, pads in
every mode, casts between numeric types, and Reshape as a view."""

import numpy as np

import compiler
import runtime
from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random, run_gpu


def test_box_copies():
    x, y = random((2, 3, 4, 5)), random((2, 1, 4, 5), seed=1)
    s = random((1, 8, 2, 3), seed=2)
    feeds = {"x": x, "y": y, "s": s}
    constants = {"starts": np.array([3, 1]), "ends": np.array([0, 4]), "axes": np.array([3, 2]),
                 "steps": np.array([-1, 2]), "shape": np.array([3, 2, 3, 4, 5]), "reps": np.array([1, 2, 1, 3]),
                 "split": np.array([1, 2])}
    nodes = [("Transpose", ["x"], {"perm": [0, 2, 3, 1]}), ("Transpose", ["x"], {}),
             ("Slice", ["x", "starts", "ends", "axes", "steps"], {}),
             ("Concat", ["x", "y", "x"], {"axis": 1}), ("Split", ["x", "split"], {"axis": 1}, 2),
             ("Expand", ["y", "shape"], {}), ("Tile", ["y", "reps"], {}),
             ("DepthToSpace", ["s"], {"blocksize": 2, "mode": "DCR"}),
             ("DepthToSpace", ["s"], {"blocksize": 2, "mode": "CRD"}), ("SpaceToDepth", ["x"], {"blocksize": 1})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants), feeds, exact=True)


def test_gathers_wrap_negative_and_clamp_out_of_range_indices():
    x = random((3, 4, 5))
    indices = np.array([[0, -1], [2, 1]], np.int64)
    elements = np.random.default_rng(1).integers(-3, 3, (2, 4, 5)).astype(np.int32)
    feeds = {"x": x, "i": indices, "e": elements}
    nodes = [("Gather", ["x", "i"], {"axis": 1}), ("Gather", ["x", "i"], {"axis": 0}),
             ("GatherElements", ["x", "e"], {"axis": 0})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, exact=True)
    bad = {"x": x, "i": np.array([[7, -9], [0, 1]], np.int64), "e": elements}
    outputs = runtime.load(compiler.compile(nodes_model(nodes, feeds), target="gpu")).infer(bad)
    np.testing.assert_array_equal(outputs["Gather_0"][:, 0, 0], x[:, 3])  # 7 clamps to the last index
    np.testing.assert_array_equal(outputs["Gather_0"][:, 0, 1], x[:, 0])  # -9 (+4 = -5) clamps to 0


def test_pad_modes():
    x = random((2, 3, 4))
    feeds = {"x": x, "value": np.array(2.5, np.float32)}
    constants = {"pads": np.array([0, 2, 3, 0, 1, 2]), "axes": np.array([2]), "axis_pads": np.array([1, 5])}
    nodes = [("Pad", ["x", "pads"], {"mode": mode}) for mode in ("constant", "reflect", "edge", "wrap")]
    nodes += [("Pad", ["x", "pads", "value"], {}), ("Pad", ["x", "axis_pads", "", "axes"], {"mode": "wrap"})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants, opset=19), feeds, exact=True)


def test_negative_pads_crop():
    """onnx.reference refuses negative pads; numpy says what they mean."""
    x = random((2, 3, 4))
    model = nodes_model([("Pad", ["x", "pads"], {})], {"x": x}, {"pads": np.array([0, -1, 2, 0, 1, -1])})
    expected = np.pad(x[:, 1:, :3], ((0, 0), (0, 1), (2, 0)))
    np.testing.assert_array_equal(run_gpu(model, {"x": x})["Pad_0"], expected)


def test_casts_between_numeric_types():
    x = np.array([-3.7, -0.5, 0.0, 0.4, 2.6, 300.0], np.float32)
    i, b = np.array([-3, 0, 1, 255, 70000, -1], np.int64), np.array([True, False, True, True, False, True])
    feeds = {"x": x, "i": i, "b": b}
    to = {"float32": 1, "uint8": 2, "int8": 3, "int16": 5, "int32": 6, "int64": 7, "bool": 9, "uint32": 12}
    nodes = [("Cast", [source], {"to": code}) for source in ("i", "b") for code in to.values()]
    nodes += [("Cast", ["x"], {"to": to[name]}) for name in ("int32", "int64", "bool", "int16")]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, exact=True)


def test_reshapes_are_views_unless_they_are_outputs():
    """Reshape -> Relu: no copy kernel (the Relu reads the input's buffer); a Reshape whose result
    is a graph output copies."""
    x = random((2, 3, 4))
    feeds = {"x": x}
    nodes = [("Reshape", ["x", "shape"], {}), ("Flatten", ["x"], {"axis": 2})]
    model = nodes_model(nodes, feeds, {"shape": np.array([4, -1])})
    assert_gpu_matches_ref(model, feeds, exact=True)
    from onnx import helper

    model.graph.node.append(helper.make_node("Relu", ["Reshape_0"], ["relu"]))
    del model.graph.output[:]
    model.graph.output.append(helper.make_value_info("relu", helper.TypeProto()))
    artifact = compiler.compile(model, target="gpu")
    assert [step["op_type"] for step in artifact.manifest["launches"]] == ["Relu"]
    np.testing.assert_array_equal(runtime.load(artifact).infer(feeds)["relu"], np.maximum(x.reshape(4, 6), 0))
