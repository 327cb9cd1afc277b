"""cpu CumSum, CumProd, Hardmax, LpNormalization and Trilu kernels against the ref target,
at 1 and 2 threads, and the nodes they refuse."""

import numpy as np
import pytest

from compiler.codegen.llvm.kernels.registry import kernel_for
from frontends.onnx.importer import import_model
from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, random, run_cpu


def _check(model, op_type: str) -> str | None:
    graph = import_model(model)
    node = next(n for n in graph.nodes() if n.op_type == op_type)
    return kernel_for(node).check(graph, node)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("shape, axis, exclusive, reverse", [
    ((3, 4, 5), 1, 0, 0), ((3, 4, 5), -1, 1, 0), ((6, 300), 0, 0, 1), ((2, 7), 1, 1, 1), ((9,), 0, 1, 1),
    ((4, 1, 3), 1, 0, 1)])
def test_cumsum(shape, axis, exclusive, reverse, dtype):
    x = random(shape, dtype)
    model = node_model("CumSum", {"x": x}, {"axis": np.array(axis, np.int64)},
                       {"exclusive": exclusive, "reverse": reverse})
    assert_cpu_matches_ref(model, {"x": x}, exact=np.issubdtype(dtype, np.integer))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("shape, axis, exclusive, reverse", [
    ((3, 4, 5), 1, 0, 0), ((5, 6), 0, 1, 1), ((2, 8), -1, 0, 1)])
def test_cumprod(shape, axis, exclusive, reverse, dtype):
    x = random(shape, dtype, seed=3) % 3 + 1 if np.issubdtype(dtype, np.integer) else random(shape, dtype) + 0.5
    model = node_model("CumProd", {"x": x}, {"axis": np.array(axis, np.int32)},
                       {"exclusive": exclusive, "reverse": reverse}, opset=26)
    assert_cpu_matches_ref(model, {"x": x}, exact=np.issubdtype(dtype, np.integer))


def test_run_time_cumsum_axis_is_rejected():
    x = random((2, 3))
    model = node_model("CumSum", {"x": x, "axis": np.array(1, np.int64)})
    assert "computed at run time" in _check(model, "CumSum")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int16, np.uint32, np.int64, np.bool_])
@pytest.mark.parametrize("shape, upper, k", [((4, 5), 1, None), ((2, 3, 6, 4), 0, 1), ((5, 3), 1, -2), ((3, 3), 0, -7)])
def test_trilu(shape, upper, k, dtype):
    x = random(shape, np.float64) > 0 if dtype is np.bool_ else random(shape, dtype)
    constants = {} if k is None else {"k": np.array(k, np.int64)}
    model = node_model("Trilu", {"x": x}, constants, {"upper": upper}, opset=14)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


def test_run_time_trilu_k_is_rejected():
    x = random((3, 3))
    model = node_model("Trilu", {"x": x, "k": np.array(0, np.int64)}, opset=14)
    assert "computed at run time" in _check(model, "Trilu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, axis, opset", [((4, 37), -1, 13), ((3, 5, 7), 1, 13), ((2, 3, 300), 0, 13),
                                                ((2, 3, 4), 1, 11), ((6,), 0, 13)])
def test_hardmax(shape, axis, opset, dtype):
    x = np.round(random(shape, dtype) * 2)  # ties: the first maximum wins
    x.flat[2] = np.nan
    model = node_model("Hardmax", {"x": x}, attrs={"axis": axis}, opset=opset)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, axis", [((4, 37), -1), ((3, 5, 7), 1), ((2, 3, 300), 0)])
def test_l2_normalization(shape, axis, dtype):
    x = random(shape, dtype)
    x[0] = 0  # a zero norm along axes other than 0 gives 0
    assert_cpu_matches_ref(node_model("LpNormalization", {"x": x}, attrs={"axis": axis}), {"x": x})


@pytest.mark.parametrize("shape, axis", [((4, 37), -1), ((3, 5, 7), 1)])
def test_l1_normalization_divides_by_the_sum_of_absolute_values(shape, axis):
    x = random(shape)
    model = node_model("LpNormalization", {"x": x}, attrs={"axis": axis, "p": 1})
    assert_cpu_matches_ref(model, {"x": x})
    expected = x / np.sum(np.abs(x), axis=axis, keepdims=True)
    np.testing.assert_allclose(run_cpu(model, {"x": x})["y"], expected, rtol=1e-5)


def test_lp_normalization_with_p_3_is_rejected():
    model = node_model("LpNormalization", {"x": random((2, 3))}, attrs={"p": 3})
    assert "p=3" in _check(model, "LpNormalization")
