"""cpu Reduce*, ArgMax and ArgMin kernels against the ref target, at 1 and 2 threads."""

import numpy as np
import pytest

from compiler.codegen.llvm.kernels.registry import kernel_for
from frontends.onnx.importer import import_model
from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, optimized_kernels, random

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
              "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"]
POSITIVE_ONLY = {"ReduceLogSum"}

# (shape, axes): innermost reduced (one column per item), middle reduced (contiguous columns),
# several split groups, everything, size-1 dims, and more than one block of columns.
LAYOUTS = [((3, 4, 5), [2]), ((3, 4, 5), [1]), ((2, 3, 4, 5), [0, 2]), ((3, 1, 5), [-1, 0]), ((2, 3, 4), None),
           ((3, 300), [0])]


def _reduce_model(op, x, axes, keepdims=1, noop=0):
    constants = {} if axes is None else {"axes": np.array(axes, np.int64)}
    return node_model(op, {"x": x}, constants, {"keepdims": keepdims, "noop_with_empty_axes": noop}, opset=18)


def _data(op, shape, dtype=np.float32):
    x = random(shape, dtype)
    if op in POSITIVE_ONLY:
        x = np.abs(x) + 0.5
    if op == "ReduceProd":
        x = (1 + x / 10).astype(dtype)
    return x


@pytest.mark.parametrize("shape, axes", LAYOUTS)
@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_matches_ref(op, shape, axes):
    x = _data(op, shape)
    assert_cpu_matches_ref(_reduce_model(op, x, axes, keepdims=len(shape) % 2), {"x": x}, exact=op in ("ReduceMax", "ReduceMin"))


def test_a_blocked_global_pool_sums_whole_vectors():
    """ReduceMean over the image of [N, C / c, H, W, c]: each step adds a pixel's c lanes as one vector, where
    unrolling the short lane loop let LLVM vectorize the pixel loop with gathers (2.4x ONNX Runtime's time)."""
    x = random((1, 4, 13, 13, 16))
    model = node_model("ReduceMean", {"x": x}, {"axes": np.array([2, 3], np.int64)}, opset=18)
    tasks, _, _ = optimized_kernels(model)
    task = next(text for name, text in tasks.items() if name.endswith("_reducemean"))
    assert "gather" not in task and "fadd reassoc <" in task
    assert_cpu_matches_ref(model, {"x": x})


@pytest.mark.parametrize("op", ["ReduceSumSquare", "ReduceLogSumExp", "ReduceMean"])
def test_empty_axes_with_noop_reduces_each_element_alone(op):
    x = _data(op, (2, 3))
    assert_cpu_matches_ref(_reduce_model(op, x, [], noop=1), {"x": x})


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_reductions(op, dtype):
    x = random((4, 5, 3), dtype)
    if op == "ReduceProd":
        x = np.clip(x, -3, 3)
    assert_cpu_matches_ref(_reduce_model(op, x, [1]), {"x": x}, exact=True)


@pytest.mark.parametrize("op, expected", [("ReduceSum", 0.0), ("ReduceMax", -np.inf), ("ReduceLogSumExp", -np.inf)])
def test_empty_reduced_set_gives_the_identity(op, expected):
    x = np.zeros((2, 0, 3), np.float32)
    result = assert_cpu_matches_ref(_reduce_model(op, x, [1], keepdims=0), {"x": x})["y"]
    assert result.shape == (2, 3) and np.all(result == expected)


def test_float64_and_large_values_in_log_sum_exp():
    x = random((5, 7), np.float64) * 300
    assert_cpu_matches_ref(_reduce_model("ReduceLogSumExp", x, [1]), {"x": x})


def test_non_constant_axes_are_rejected():
    x = random((2, 3))
    graph = import_model(node_model("ReduceSum", {"x": x, "axes": np.array([1], np.int64)}, opset=18))
    node = next(n for n in graph.nodes() if n.op_type == "ReduceSum")
    assert "axes must be a constant" in kernel_for(node).check(graph, node)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("shape, axis, keepdims, last", [
    ((3, 4, 5), 1, 1, 0), ((3, 4, 5), -1, 0, 1), ((6, 300), 0, 1, 0), ((2, 1, 3), 1, 0, 1), ((7,), 0, 0, 0)])
def test_arg_reductions(op, shape, axis, keepdims, last):
    x = np.round(random(shape) * 2)  # ties, so select_last_index matters
    x.flat[1] = np.nan
    model = node_model(op, {"x": x}, attrs={"axis": axis, "keepdims": keepdims, "select_last_index": last})
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
def test_arg_max_other_dtypes(dtype):
    x = random((4, 9), dtype)
    assert_cpu_matches_ref(node_model("ArgMax", {"x": x}, attrs={"axis": 1}), {"x": x}, exact=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint64, np.bool_])
@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_max_and_min_on_narrow_unsigned_and_bool(op, dtype):
    """Unsigned and bool need their own identities (0 / all ones), not the signed ones."""
    x = np.random.default_rng(1).integers(0, 2 if dtype is np.bool_ else 200, (3, 4, 5)).astype(dtype)
    model = node_model(op, {"x": x}, {"axes": np.array([1, 2], np.int64)}, {"keepdims": 0}, opset=20)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)
