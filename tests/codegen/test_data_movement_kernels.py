"""cpu data-movement kernels against the ref target, exactly, with 1 and 2 threads.

Data arrives as graph inputs (the ref pipeline would fold initializers away); shape-like
operands (slice bounds, pads, split sizes, indices where noted) are initializers.
"""

import numpy as np
import pytest
from onnx import TensorProto, helper

import compiler
import runtime
from compiler.driver import UnsupportedByTargetError

DTYPES = ["float32", "int64", "uint8", "bool"]


def _data(dtype: str, shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dtype)


def _model(nodes, feeds: dict, initializers: dict | None = None, outputs=("y",), opset: int = 18):
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for name, a in feeds.items()]
    results = [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None) for name in outputs]
    inits = [helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape, a.reshape(-1).tolist())
             for name, a in (initializers or {}).items()]
    graph = helper.make_graph(nodes, "g", inputs, results, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check(nodes, feeds: dict, initializers: dict | None = None, outputs=("y",), opset: int = 18, disable=()):
    """Compile for cpu, run with 1 and 2 threads, and compare bit-exactly with the ref target."""
    model = _model(nodes, feeds, initializers, outputs, opset)
    expected = runtime.load(compiler.compile(model, target="ref", disable=disable)).infer(feeds)
    artifact = compiler.compile(model, target="cpu", disable=disable)
    for threads in (1, 2):
        got = runtime.load(artifact, num_threads=threads).infer(feeds)
        for name in outputs:
            assert got[name].dtype == expected[name].dtype, name
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{name}, {threads} thread(s)")
    return got


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_dtypes(dtype):
    _check([helper.make_node("Transpose", ["x"], ["y"], perm=[2, 0, 1])], {"x": _data(dtype, (3, 5, 7))})


@pytest.mark.parametrize("shape, perm", [
    ((2, 3, 4, 5), [0, 2, 3, 1]),  # NCHW -> NHWC
    ((2, 3, 4, 5), [0, 1, 3, 2]),  # keeps the outer pair together (coalesced)
    ((1, 6, 1, 7), None),  # default perm reverses; unit dims vanish
    ((300, 257), [1, 0]),  # tiled, with edge strips both ways; many work items
    ((288, 32), [1, 0]),  # tiled, no edge strips
    ((2, 17, 19, 21), [0, 3, 1, 2]),  # NHWC -> NCHW, tiled
])
def test_transpose_permutations(shape, perm):
    attrs = {"perm": perm} if perm else {}
    _check([helper.make_node("Transpose", ["x"], ["y"], **attrs)], {"x": _data("float32", shape)})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(dtype, axis):
    shapes = [[2, 3, 5], [2, 3, 5], [2, 3, 5]]
    for k, size in enumerate((1, 4, 2)):
        shapes[k][axis] = size
    feeds = {f"x{k}": _data(dtype, s, seed=k) for k, s in enumerate(shapes)}
    _check([helper.make_node("Concat", list(feeds), ["y"], axis=axis)], feeds)


def test_concat_large_along_first_axis_splits_into_items():
    feeds = {"a": _data("float32", (40000,)), "b": _data("float32", (25001,), seed=1)}
    _check([helper.make_node("Concat", ["a", "b"], ["y"], axis=0)], feeds)


@pytest.mark.parametrize("dtype", ["float32", "bool"])
def test_split_with_sizes_input(dtype):
    node = helper.make_node("Split", ["x", "split"], ["y0", "y1", "y2"], axis=1)
    _check([node], {"x": _data(dtype, (3, 9, 2))}, {"split": np.array([2, 0, 7], np.int64)}, outputs=("y0", "y1", "y2"))


def test_split_num_outputs_uneven():
    node = helper.make_node("Split", ["x"], ["y0", "y1", "y2"], axis=-1, num_outputs=3)
    _check([node], {"x": _data("int64", (4, 7))}, outputs=("y0", "y1", "y2"))


@pytest.mark.parametrize("starts, ends, axes, steps", [
    ([1, 0], [3, 5], None, None),
    ([-1], [-100], [1], [-1]),  # reverse an axis, end clamped
    ([5, -2], [0, 1 << 62], [2, 0], [-2, 1]),  # negative step with start past the end
    ([0, 0], [10, 10], [-1, 1], [3, 2]),
    ([2], [2], [0], None),  # empty result
])
def test_slice(starts, ends, axes, steps):
    inits = {"starts": np.array(starts, np.int64), "ends": np.array(ends, np.int64)}
    if axes is not None:
        inits["axes"] = np.array(axes, np.int64)
    if steps is not None:
        inits["steps"] = np.array(steps, np.int64)
    names = ["x", "starts", "ends"] + (["axes"] if axes is not None else ([""] if steps else [])) + (["steps"] if steps else [])
    _check([helper.make_node("Slice", names, ["y"])], {"x": _data("float32", (4, 6, 7))}, inits)


@pytest.mark.parametrize("dtype", ["int64", "uint8"])
def test_slice_dtypes(dtype):
    inits = {"starts": np.array([-1, 1], np.int64), "ends": np.array([-6, 6], np.int64),
             "axes": np.array([1, 2], np.int64), "steps": np.array([-2, 2], np.int64)}
    _check([helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])], {"x": _data(dtype, (2, 6, 7))}, inits)


@pytest.mark.parametrize("in_shape, shape", [((3, 1), (2, 3, 5)), ((1, 4, 1), (3, 4, 6)), ((5,), (1,)), ((2, 1, 3), (2, 3000, 3))])
@pytest.mark.parametrize("dtype", ["float32", "bool"])
def test_expand(in_shape, shape, dtype):
    _check([helper.make_node("Expand", ["x", "shape"], ["y"])], {"x": _data(dtype, in_shape)}, {"shape": np.array(shape, np.int64)})


@pytest.mark.parametrize("shape, repeats", [((2, 3), (3, 2)), ((1, 5, 3), (4, 1, 2)), ((3,), (0,))])
def test_tile(shape, repeats):
    _check([helper.make_node("Tile", ["x", "repeats"], ["y"])], {"x": _data("int64", shape)}, {"repeats": np.array(repeats, np.int64)})


@pytest.mark.parametrize("mode, pads", [
    ("constant", [0, 1, 2, 1, 0, 3]),
    ("reflect", [0, 2, 3, 1, 0, 2]),
    ("reflect", [0, 0, 9, 0, 0, 8]),  # wider than the axis: reflects back and forth
    ("edge", [1, 2, 2, 0, 3, 1]),
])
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_pad(mode, pads, dtype):
    _check([helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)], {"x": _data(dtype, (2, 3, 4))},
           {"pads": np.array(pads, np.int64)})


def test_negative_pads_crop():
    """onnx's reference Pad cannot crop, so numpy gives the expected value."""
    feeds = {"x": _data("float32", (2, 3, 4))}
    model = _model([helper.make_node("Pad", ["x", "pads"], ["y"])], feeds, {"pads": np.array([1, -1, 0, 0, 2, -2], np.int64)})
    got = runtime.load(compiler.compile(model, target="cpu"), num_threads=2).infer(feeds)["y"]
    np.testing.assert_array_equal(got, np.pad(feeds["x"][:, 1:, :2], ((1, 0), (0, 2), (0, 0))))


def test_pad_wrap_opset19():
    _check([helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap")], {"x": _data("int64", (3, 4))},
           {"pads": np.array([2, 5, 1, 3], np.int64)}, opset=19)


def test_pad_value_at_run_time_and_axes():
    node = helper.make_node("Pad", ["x", "pads", "value", "axes"], ["y"])
    feeds = {"x": _data("float32", (2, 3, 4)), "value": np.array(7.5, np.float32)}
    _check([node], feeds, {"pads": np.array([1, 2, 0, 3], np.int64), "axes": np.array([-1, 1], np.int64)})


def test_pad_bool_constant_value():
    node = helper.make_node("Pad", ["x", "pads", "value"], ["y"])
    _check([node], {"x": _data("bool", (3, 5))}, {"pads": np.array([1, 0, 2, 3], np.int64), "value": np.array(True)})


def test_reflect_pad_far_wider_than_the_input_is_rejected():
    model = _model([helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")], {"x": _data("float32", (2,))},
                   {"pads": np.array([600, 0], np.int64)})
    with pytest.raises(UnsupportedByTargetError, match="pieces"):
        compiler.compile(model, target="cpu")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis, indices", [
    (0, np.array([3, -1, 0, 3], np.int64)),
    (1, np.array([[2, 0], [-5, 4]], np.int32)),
    (-1, np.array(1, np.int64)),  # scalar index drops the axis
])
def test_gather(dtype, axis, indices):
    feeds = {"x": _data(dtype, (4, 5, 3)), "i": indices}
    _check([helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)], feeds)


def test_gather_rows_of_an_embedding_table():
    feeds = {"x": _data("float32", (50, 300)), "i": np.random.default_rng(1).integers(-50, 50, (7, 13))}
    _check([helper.make_node("Gather", ["x", "i"], ["y"])], feeds)


def test_gather_clamps_out_of_range_indices():
    feeds = {"x": _data("float32", (4, 3)), "i": np.array([7, -9, 2], np.int64)}
    model = _model([helper.make_node("Gather", ["x", "i"], ["y"])], feeds)
    got = runtime.load(compiler.compile(model, target="cpu")).infer(feeds)["y"]
    np.testing.assert_array_equal(got, feeds["x"][[3, 0, 2]])


@pytest.mark.parametrize("axis, index_shape", [(0, (2, 4)), (1, (3, 2)), (-1, (3, 4))])
@pytest.mark.parametrize("dtype", ["float32", "bool"])
def test_gather_elements(axis, index_shape, dtype):
    size = (3, 4)[axis]
    indices = np.random.default_rng(2).integers(-size, size, index_shape)
    _check([helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)], {"x": _data(dtype, (3, 4)), "i": indices})


@pytest.mark.parametrize("op, attrs, shape, opset", [
    ("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, (2, 8, 3, 5), 18),
    ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, (2, 8, 3, 5), 18),
    ("SpaceToDepth", {"blocksize": 3}, (2, 2, 6, 9), 18),
    ("SpaceToDepth", {"blocksize": 2, "mode": "CRD"}, (1, 3, 4, 6), 28),
])
def test_depth_space(op, attrs, shape, opset):
    _check([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": _data("float32", shape)}, opset=opset)


CASTS = [("float32", "int32"), ("float32", "uint8"), ("float32", "bool"), ("float32", "float64"), ("float64", "float32"),
         ("int64", "float32"), ("int64", "int8"), ("int8", "uint64"), ("uint8", "int64"), ("bool", "float32"),
         ("bool", "int64"), ("int32", "bool"), ("uint16", "float64"), ("float32", "int64")]


def test_cast_between_numeric_types_and_bool():
    """Values in every target's range (out-of-range float -> int is undefined in ONNX); one compile for all pairs."""
    sources = sorted({s for s, _ in CASTS})
    feeds = {s: (_data(s, (3, 7), seed=3) * (3 if s.startswith("float") else 1)).astype(s) for s in sources}
    feeds["float32"] = np.abs(feeds["float32"])  # also feeds uint8
    nodes = [helper.make_node("Cast", [s], [f"{s}_to_{t}"], to=helper.np_dtype_to_tensor_dtype(np.dtype(t))) for s, t in CASTS]
    _check(nodes, feeds, outputs=[f"{s}_to_{t}" for s, t in CASTS])


def test_cast_like():
    feeds = {"x": _data("int64", (5,)), "like": _data("float32", (1,))}
    _check([helper.make_node("CastLike", ["x", "like"], ["y"])], feeds)


def test_compile_time_results_when_not_folded():
    """Shape, Size, ConstantOfShape and Range normally fold away; with folding off they are kernels."""
    value = helper.make_tensor("value", TensorProto.INT32, [1], [9])
    nodes = [helper.make_node("Shape", ["x"], ["shape"], start=1),
             helper.make_node("Size", ["x"], ["size"]),
             helper.make_node("ConstantOfShape", ["dims"], ["filled"], value=value),
             helper.make_node("Range", ["start", "limit", "delta"], ["range"])]
    inits = {"dims": np.array([3, 4097], np.int64), "start": np.array(1.5, np.float32),
             "limit": np.array(-4, np.float32), "delta": np.array(-0.5, np.float32)}
    _check(nodes, {"x": _data("float32", (2, 3, 4))}, inits, outputs=("shape", "size", "filled", "range"),
           disable=["fold-constants"])
