"""float16 and bfloat16 model tensors on the gpu target: stored as 16 bits on any device and
computed in float, rounded to nearest even per node. The conversions are checked bit for bit
against numpy / ml_dtypes over every 16-bit pattern and the rounding edges; ops against
onnx.reference."""

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tests.gpu.harness import nodes_model, run_gpu

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
HALVES = {"float16": (np.dtype(np.float16), TensorProto.FLOAT16), "bfloat16": (BFLOAT16, TensorProto.BFLOAT16)}


def _assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal bit patterns, except that any NaN matches any NaN."""
    assert actual.dtype == expected.dtype
    nan = np.isnan(expected.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(actual.astype(np.float32)), nan)
    width = np.uint16 if expected.itemsize == 2 else np.uint32
    np.testing.assert_array_equal(actual.view(width)[~nan], expected.view(width)[~nan])


def _rounding_edges(dtype: np.dtype) -> np.ndarray:
    """float32 values around every representable value of `dtype`: the values, the halfway points
    between neighbours (ties go to even) and just either side, plus overflow and specials."""
    values = np.arange(1 << 16, dtype=np.uint16).view(dtype).astype(np.float32)
    values = np.sort(values[np.isfinite(values)])
    middles = (values[:-1].astype(np.float64) + values[1:]) / 2
    bits = middles.astype(np.float32).view(np.uint32)
    specials = np.array([np.inf, -np.inf, np.nan, 65519.0, 65520.0, 1e6, -1e6, 1e-30, 3e-8, 2.9e-8, 0.0, -0.0],
                        np.float32)
    return np.concatenate([values, bits.view(np.float32), (bits + 1).view(np.float32), (bits - 1).view(np.float32),
                           specials])


@pytest.mark.parametrize("name", HALVES)
def test_casts_match_numpy_bit_for_bit(name):
    dtype, onnx_type = HALVES[name]
    every = np.arange(1 << 16, dtype=np.uint16).view(dtype)
    edges = _rounding_edges(dtype)
    feeds = {"h": every, "f": edges}
    model = nodes_model([("Cast", ["h"], {"to": TensorProto.FLOAT}), ("Cast", ["f"], {"to": onnx_type})], feeds)
    results = run_gpu(model, feeds)
    _assert_same_bits(results["Cast_0"], every.astype(np.float32))
    with np.errstate(over="ignore"):
        _assert_same_bits(results["Cast_1"], edges.astype(dtype))


@pytest.mark.parametrize("name", HALVES)
def test_ops_match_onnx_reference(name):
    """Elementwise (alone and fused), reductions, Softmax, MatMul, data movement and LRN (which only
    takes float32, so it is widened between Casts) on half-float tensors."""
    dtype = HALVES[name][0]
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((2, 4, 3, 5)).astype(dtype), "y": rng.standard_normal((2, 4, 5, 3)).astype(dtype),
             "z": rng.standard_normal((2, 4, 3, 5)).astype(dtype)}
    nodes = [("Add", ["x", "x"], {}), ("Exp", ["x"], {}), ("Sigmoid", ["x"], {}), ("Mul", ["x", "x"], {}),
             ("ReduceSum", ["x"], {"keepdims": 0}), ("ReduceMax", ["x"], {}), ("Softmax", ["x"], {"axis": -1}),
             ("MatMul", ["x", "y"], {}), ("Transpose", ["x"], {"perm": [0, 2, 1, 3]}),
             ("Concat", ["x", "x"], {"axis": 1}), ("LRN", ["x"], {"size": 3}), ("Greater", ["x", "z"], {})]
    model = nodes_model(nodes, feeds)
    expected = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))
    actual = run_gpu(model, feeds)
    for output, want in expected.items():
        assert actual[output].dtype == want.dtype and actual[output].shape == want.shape, output
        ulp = 2.0 ** -10 if name == "float16" else 2.0 ** -7  # one unit in the last place, relative
        np.testing.assert_allclose(actual[output].astype(np.float32), want.astype(np.float32), rtol=2 * ulp,
                                   atol=1e-3, err_msg=output)


def test_each_node_rounds():
    """Mul then Add round the square to float16 before adding, as onnx.reference does:
    (1 + 3/1024)^2 - 1 is 6/1024 rounded first, 6/1024 + 9/2^20 (another float16) not."""
    feeds = {"a": np.full((8,), 1 + 3 / 1024, np.float16), "b": np.full((8,), -1.0, np.float16)}
    model = nodes_model([("Mul", ["a", "a"], {})], feeds)
    model.graph.node.append(helper.make_node("Add", ["Mul_0", "b"], ["sum"]))
    model.graph.output.append(helper.make_value_info("sum", helper.TypeProto()))
    expected = ReferenceEvaluator(model).run(["sum"], feeds)[0]
    assert expected[0] == np.float16(6 / 1024)
    _assert_same_bits(run_gpu(model, feeds)["sum"], expected)
