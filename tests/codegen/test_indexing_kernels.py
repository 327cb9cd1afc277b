"""cpu scatter, GatherND, OneHot, EyeLike, TopK, ReverseSequence, Einsum, Det and Dropout kernels
against the ref target, at 1 and 2 threads, and the nodes they refuse."""

import numpy as np
import pytest

from compiler.codegen.llvm.kernels.registry import kernel_for
from frontends.onnx.importer import import_model
from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, random, run_cpu

REDUCTIONS = ["none", "add", "mul", "max", "min"]


def _check(model, op_type: str) -> str | None:
    graph = import_model(model)
    node = next(n for n in graph.nodes() if n.op_type == op_type)
    return kernel_for(node).check(graph, node)


# ----- ScatterElements / Scatter -------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("data_shape, indices_shape, axis", [
    ((5, 4), (7, 4), 0), ((3, 6), (3, 9), 1), ((4, 5, 6), (3, 7, 2), 1), ((4, 5, 6), (2, 3, 8), -1),
    ((6, 3, 5), (9, 2, 4), 0), ((40,), (60,), 0), ((6, 600), (9, 300), 0), ((3, 5, 70, 8), (2, 5, 40, 8), 1)])
def test_scatter_elements(data_shape, indices_shape, axis, reduction):
    rng = np.random.default_rng(1)
    size = data_shape[axis]
    indices = rng.integers(-size, size, indices_shape).astype(np.int64)  # duplicates and negatives
    data, updates = random(data_shape), random(indices_shape, seed=2)
    model = node_model("ScatterElements", {"data": data, "indices": indices, "updates": updates},
                       attrs={"axis": axis, "reduction": reduction}, opset=18)
    assert_cpu_matches_ref(model, {"data": data, "indices": indices, "updates": updates}, exact=reduction != "add")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.float64])
def test_scatter_elements_dtypes_and_int32_indices(dtype):
    data, updates = random((4, 6), dtype), random((4, 3), dtype, seed=5)
    indices = np.array([[0, 5, 0], [1, 1, 2], [-1, 3, -6], [2, 2, 2]], np.int32)
    feeds = {"data": data, "indices": indices, "updates": updates}
    for reduction in REDUCTIONS:
        model = node_model("ScatterElements", feeds, attrs={"axis": 1, "reduction": reduction}, opset=18)
        assert_cpu_matches_ref(model, feeds, exact=True)


def test_deprecated_scatter():
    data, updates = random((3, 5)), random((2, 3), seed=4)
    indices = np.array([[1, 0, 4], [2, -1, 0]], np.int64)
    feeds = {"data": data, "indices": indices, "updates": updates}
    assert_cpu_matches_ref(node_model("Scatter", feeds, attrs={"axis": 1}, opset=10), feeds, exact=True)


def test_scatter_elements_skips_out_of_range_indices():
    data, updates = np.zeros((2, 4), np.float32), np.ones((2, 3), np.float32)
    indices = np.array([[0, 4, -5], [3, 99, -1]], np.int64)
    feeds = {"data": data, "indices": indices, "updates": updates}
    y = run_cpu(node_model("ScatterElements", feeds, attrs={"axis": 1}, opset=18), feeds)["y"]
    np.testing.assert_array_equal(y, [[1, 0, 0, 0], [0, 0, 0, 1]])


# ----- ScatterND ------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("data_shape, indices_shape", [
    ((4, 4, 4), (2, 1)), ((6, 5), (3, 4, 2)), ((5, 3, 6000), (7, 1)), ((50, 30), (200, 2)), ((7,), (9, 1)),
    ((3, 4), (0,))])
def test_scatter_nd(data_shape, indices_shape, reduction):
    rng = np.random.default_rng(3)
    depth = indices_shape[-1]
    indices = np.zeros(indices_shape, np.int64)  # depth 0: one tuple, replacing the whole data
    for d, size in enumerate(data_shape[:depth]):
        indices[..., d] = rng.integers(-size, size, indices_shape[:-1])
    data = random(data_shape)
    updates = random(indices_shape[:-1] + data_shape[depth:], seed=7)
    feeds = {"data": data, "indices": indices, "updates": updates}
    model = node_model("ScatterND", feeds, attrs={"reduction": reduction}, opset=18)
    assert_cpu_matches_ref(model, feeds, exact=reduction != "add")


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.uint8])
def test_scatter_nd_dtypes(dtype):
    data, updates = random((5, 4), dtype), random((6, 4), dtype, seed=1)
    indices = np.array([[0], [4], [-1], [2], [0], [-5]], np.int64)
    feeds = {"data": data, "indices": indices, "updates": updates}
    for reduction in REDUCTIONS:
        model = node_model("ScatterND", feeds, attrs={"reduction": reduction}, opset=18)
        assert_cpu_matches_ref(model, feeds, exact=True)


def test_scatter_nd_skips_out_of_range_and_keeps_index_order():
    data = np.zeros((3, 2), np.int64)
    indices = np.array([[0], [3], [-4], [-1], [2]], np.int64)
    updates = np.array([[1, 2], [9, 9], [9, 9], [3, 4], [5, 6]], np.int64)
    feeds = {"data": data, "indices": indices, "updates": updates}
    y = run_cpu(node_model("ScatterND", feeds, opset=18), feeds)["y"]
    np.testing.assert_array_equal(y, [[1, 2], [0, 0], [5, 6]])


# ----- TensorScatter --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize("cache_shape, update_len, axis, write", [
    ((2, 3, 8, 5), 2, -2, [1, 6]), ((3, 6, 4), 3, 1, [0, 3, 5]), ((2, 2, 5, 3), 5, 2, None),
    ((2, 4, 3, 2), 1, 1, [3, 0])])
def test_tensor_scatter(cache_shape, update_len, axis, write, mode):
    update_shape = list(cache_shape)
    update_shape[axis] = update_len
    cache, update = random(cache_shape), random(tuple(update_shape), seed=1)
    feeds = {"past_cache": cache, "update": update}
    if write is not None:  # linear writes stay inside the cache: onnx.reference fails past its end
        last = cache_shape[axis] - update_len if mode == "linear" else cache_shape[axis]
        feeds["write_indices"] = np.minimum(write, last).astype(np.int64)
    model = node_model("TensorScatter", feeds, attrs={"axis": axis, "mode": mode}, opset=24)
    assert_cpu_matches_ref(model, feeds, exact=True)


def test_tensor_scatter_skips_writes_past_the_cache():
    cache, update = np.zeros((2, 4, 1), np.float32), np.ones((2, 2, 1), np.float32)
    feeds = {"past_cache": cache, "update": update, "write_indices": np.array([3, -1], np.int64)}
    y = run_cpu(node_model("TensorScatter", feeds, attrs={"axis": 1}, opset=24), feeds)["y"]
    np.testing.assert_array_equal(y[..., 0], [[0, 0, 0, 1], [1, 0, 0, 0]])


# ----- GatherND -------------------------------------------------------------------------------
@pytest.mark.parametrize("data_shape, indices_shape, batch_dims", [
    ((2, 2), (2, 2), 0), ((2, 2, 2), (2, 1, 2), 0), ((2, 2, 2), (2, 1), 1), ((4, 5, 6, 7), (3, 2, 2), 0),
    ((3, 4, 5, 6), (3, 4, 2, 1), 2), ((3, 5, 7), (3, 6, 2), 1), ((5,), (4, 1), 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.bool_])
def test_gather_nd(data_shape, indices_shape, batch_dims, dtype):
    rng = np.random.default_rng(2)
    depth = indices_shape[-1]
    axes = data_shape[batch_dims:batch_dims + depth]
    indices = np.stack([rng.integers(-d, d, indices_shape[:-1]) for d in axes], -1).astype(np.int64)
    data = random(data_shape, dtype) if dtype != np.bool_ else random(data_shape) > 0
    feeds = {"data": data, "indices": indices}
    model = node_model("GatherND", feeds, attrs={"batch_dims": batch_dims}, opset=13)
    assert_cpu_matches_ref(model, feeds, exact=True)


def test_gather_nd_clamps_out_of_range_indices():
    data, indices = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([[5, 7], [-9, -1]], np.int64)
    feeds = {"data": data, "indices": indices}
    y = run_cpu(node_model("GatherND", feeds, opset=13), feeds)["y"]
    np.testing.assert_array_equal(y, [5, 2])


# ----- OneHot / EyeLike -----------------------------------------------------------------------
@pytest.mark.parametrize("indices_dtype", [np.int64, np.int32, np.float32, np.uint8])
@pytest.mark.parametrize("shape, axis", [((3,), -1), ((2, 3), 1), ((2, 3), -2), ((2, 3, 4), 0), ((5, 2), 2)])
def test_one_hot(shape, axis, indices_dtype):
    depth = 5
    low = 0 if indices_dtype == np.uint8 else -depth
    indices = np.random.default_rng(0).integers(low, depth, shape).astype(indices_dtype)
    values = np.array([-2.5, 4.0], np.float32)
    model = node_model("OneHot", {"indices": indices}, {"depth": np.array(depth, np.int64), "values": values},
                       attrs={"axis": axis}, opset=11)
    assert_cpu_matches_ref(model, {"indices": indices}, exact=True)


def test_one_hot_values_and_depth_given_at_run_time():
    # a float depth (the output type fixes it); off/on values read from a graph input
    indices = np.array([[1, -1], [4, 0]], np.int64)
    feeds = {"indices": indices, "values": np.array([3, -7], np.int8)}
    model = node_model("OneHot", feeds, {"depth": np.array(3.0, np.float32)}, attrs={"axis": 0}, opset=11)
    model.graph.node[0].input[:] = ["indices", "depth", "values"]
    assert_cpu_matches_ref(model, feeds, exact=True)


def test_one_hot_out_of_range_indices_are_all_off():
    indices = np.array([[0, -1, 3, -4, 9, -10]], np.int64)
    model = node_model("OneHot", {"indices": indices},
                       {"depth": np.array([3], np.int64), "values": np.array([0, 7], np.int32)}, opset=11)
    y = run_cpu(model, {"indices": indices})["y"]
    np.testing.assert_array_equal(y[0], [[7, 0, 0], [0, 0, 7], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("shape, attrs", [((4, 4), {}), ((3, 4), {"dtype": 11}), ((4, 5), {"dtype": 1, "k": 1}),
                                          ((5, 3), {"k": -2}), ((3, 3), {"k": 7}), ((2, 6), {"dtype": 9, "k": 3})])
def test_eye_like(shape, attrs):
    x = random(shape, np.int32)
    assert_cpu_matches_ref(node_model("EyeLike", {"x": x}, attrs=attrs), {"x": x}, exact=True)


# ----- TopK -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint64, np.int8,
                                   np.uint8])
@pytest.mark.parametrize("shape, k, axis, largest", [
    ((3, 4), 3, 1, 1), ((3, 4), 2, -1, 0), ((5, 6, 7), 4, 1, 1), ((5, 6, 7), 6, 1, 0), ((200,), 1, 0, 1),
    ((4, 300), 17, 1, 0), ((2, 9, 3), 9, 1, 1), ((6, 2), 0, 0, 1)])
def test_top_k(shape, k, axis, largest, dtype):
    x = np.random.default_rng(5).integers(0, 7, shape).astype(dtype)  # many ties
    if np.issubdtype(dtype, np.floating):
        x += np.where(random(shape, dtype) > 1, 0.5, 0).astype(dtype)
    model = node_model("TopK", {"x": x}, {"k": np.array([k], np.int64)}, {"axis": axis, "largest": largest},
                       outputs=("values", "indices"), opset=11)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


@pytest.mark.parametrize("largest", [0, 1])
def test_top_k_puts_nan_above_numbers(largest):
    x = np.array([[1.0, np.nan, -np.inf, 3.0, np.nan, 0.0, -0.0, np.inf]], np.float32)
    model = node_model("TopK", {"x": x}, {"k": np.array([8], np.int64)}, {"largest": largest},
                       outputs=("values", "indices"), opset=11)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


# ----- ReverseSequence ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
@pytest.mark.parametrize("shape, batch_axis, time_axis", [((4, 4), 1, 0), ((4, 4), 0, 1), ((3, 5, 2, 3), 0, 1),
                                                          ((6, 3, 7), 1, 0)])
def test_reverse_sequence(shape, batch_axis, time_axis, dtype):
    x = random(shape, dtype) if dtype != np.bool_ else random(shape) > 0
    lengths = np.random.default_rng(4).integers(0, shape[time_axis] + 1, shape[batch_axis]).astype(np.int64)
    model = node_model("ReverseSequence", {"x": x, "sequence_lens": lengths},
                       attrs={"batch_axis": batch_axis, "time_axis": time_axis}, opset=10)
    assert_cpu_matches_ref(model, {"x": x, "sequence_lens": lengths}, exact=True)


def test_reverse_sequence_clamps_lengths():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    feeds = {"x": x, "sequence_lens": np.array([9, -3], np.int64)}
    y = run_cpu(node_model("ReverseSequence", feeds, attrs={"batch_axis": 0, "time_axis": 1}, opset=10), feeds)["y"]
    np.testing.assert_array_equal(y, [[3, 2, 1, 0], [4, 5, 6, 7]])


# ----- Einsum ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("equation, shapes", [
    ("ij->ji", [(3, 4)]), ("ij->i", [(3, 4)]), ("...ii ->...i", [(3, 5, 5)]), ("i,i", [(5,), (5,)]),
    ("bij, bjk -> bik", [(5, 2, 3), (5, 3, 4)]), ("->", [()]), ("ii", [(4, 4)]), ("ii->i", [(4, 4)]),
    ("ij,jk", [(3, 7), (7, 2)]), ("Ba", [(2, 3)]), ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("...i,...i->...", [(2, 1, 3), (1, 4, 3)]), ("i...i", [(3, 2, 3)]), ("abc,cd,de->ea", [(2, 3, 4), (4, 5), (5, 6)]),
    ("i,j->ij", [(3,), (4,)]), ("bhqd,bhkd->bhqk", [(2, 3, 4, 8), (2, 3, 5, 8)]), ("ij->", [(0, 3)]),
    ("ik,kj", [(2, 0), (0, 3)])])
def test_einsum(equation, shapes, dtype):
    feeds = {f"x{i}": random(shape, dtype, seed=i) for i, shape in enumerate(shapes)}
    model = node_model("Einsum", feeds, attrs={"equation": equation}, opset=12)
    assert_cpu_matches_ref(model, feeds, exact=np.issubdtype(dtype, np.integer))


def test_einsum_broadcasts_size_one_dims_like_numpy():
    # onnx type inference does not broadcast these, so the contraction is checked directly
    from compiler.codegen.llvm.kernels.einsum import contraction
    plan = contraction("ij,ij->ij", [(1, 3), (2, 3)])
    assert plan.sizes == {"i": 2, "j": 3} and plan.strides[0] == {"i": 0, "j": 1}
    plan = contraction("...i,...i", [(2, 1, 3), (4, 3)])
    assert plan.output == ("...2", "...1") and plan.summed == ("i",) and plan.strides[1] == {"...1": 3, "i": 1}


@pytest.mark.parametrize("equation, reason", [("ij,jk->ik", "2 terms for 1"), ("ijk->i", "rank"),
                                              ("ij->k", "names one no input has"), ("ii->ii", "repeats")])
def test_einsum_refuses_bad_equations(equation, reason):
    from compiler.codegen.llvm.kernels.einsum import contraction
    with pytest.raises(ValueError, match=reason):
        contraction(equation, [(3, 3)])


# ----- Det ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 2), (3, 2, 2), (1, 1), (2, 3, 5, 5), (4, 17, 17), (0, 3, 3)])
def test_det(shape, dtype):
    x = random(shape, dtype)
    assert_cpu_matches_ref(node_model("Det", {"x": x}, opset=11), {"x": x})


def test_det_of_singular_and_permuted_matrices():
    singular, flipped, permuted = [[1, 2, 3], [2, 4, 6], [0, 1, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]], \
        [[0, 2, 0], [3, 0, 0], [0, 0, 4]]
    x = np.array([singular, flipped, permuted], np.float64)
    y = run_cpu(node_model("Det", {"x": x}, opset=11), {"x": x})["y"]
    np.testing.assert_allclose(y, [0, -1, -24], atol=1e-12)


# ----- Dropout --------------------------------------------------------------------------------
@pytest.mark.parametrize("opset, outputs", [(11, ("y",)), (11, ("y", "mask")), (22, ("y", "mask")), (7, ("y", "mask"))])
def test_dropout_at_inference_is_identity(opset, outputs):
    x = random((3, 4, 5000))
    model = node_model("Dropout", {"x": x}, attrs={} if opset >= 12 else {"ratio": 0.3}, outputs=outputs, opset=opset)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


def test_dropout_with_constant_training_mode():
    x = random((2, 5), np.float64)
    off = node_model("Dropout", {"x": x}, {"r": np.array(0.4, np.float32), "t": np.array(False)},
                     outputs=("y", "mask"), opset=13)
    assert_cpu_matches_ref(off, {"x": x}, exact=True)
    zero_ratio = node_model("Dropout", {"x": x}, {"r": np.array(0.0, np.float32), "t": np.array(True)}, opset=13)
    assert_cpu_matches_ref(zero_ratio, {"x": x}, exact=True)
    training = node_model("Dropout", {"x": x}, {"r": np.array(0.4, np.float32), "t": np.array(True)}, opset=13)
    assert "random numbers" in _check(training, "Dropout")
    run_time = node_model("Dropout", {"x": x, "r": np.array(0.4, np.float32), "t": np.array(True)}, opset=13)
    assert "training_mode computed at run time" in _check(run_time, "Dropout")


def test_det_of_matrices_too_large_for_the_stack_is_refused():
    x = random((400, 400), np.float64)
    assert "fit 1 MiB" in _check(node_model("Det", {"x": x}, opset=11), "Det")
