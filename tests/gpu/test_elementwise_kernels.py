"""gpu elementwise kernels beside the ref target: every float32 op of the expression renderer,
broadcasting, variadic ops, integer and bool ops, and no traps on bad integer data."""

import numpy as np
import pytest

from compiler.codegen.opencl.expressions import OPS
from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random, run_gpu

UNARY = {  # op: (low, high) of the inputs, inside the op's domain
    "Relu": (-3, 3), "LeakyRelu": (-3, 3), "Elu": (-3, 3), "Selu": (-3, 3), "HardSigmoid": (-4, 4),
    "HardSwish": (-4, 4), "Sigmoid": (-6, 6), "Softplus": (-6, 6), "Softsign": (-6, 6), "Neg": (-3, 3),
    "Abs": (-3, 3), "Reciprocal": (0.5, 3), "Sign": (-3, 3), "Shrink": (-2, 2), "Sqrt": (0, 9), "Exp": (-5, 5),
    "Log": (0.1, 9), "Floor": (-5, 5), "Ceil": (-5, 5), "Round": (-5, 5), "Sin": (-6, 6), "Cos": (-6, 6),
    "Tan": (-1.5, 1.5), "Tanh": (-5, 5), "Acos": (-1, 1), "Asin": (-1, 1), "Atan": (-9, 9), "Sinh": (-5, 5),
    "Cosh": (-5, 5), "Asinh": (-9, 9), "Acosh": (1, 9), "Atanh": (-0.99, 0.99), "Erf": (-3, 3), "Clip": (-3, 3),
}
BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "PRelu"]
COMPARISONS = ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]
OTHERS = {"Sum", "Mean", "IsInf", "IsNaN", "And", "Or", "Xor", "Not", "Where", "BitShift", "BitwiseAnd", "BitwiseOr",
          "BitwiseXor", "BitwiseNot", "BatchNormalization"}


QUANTIZATION = {"QuantizeLinear", "DequantizeLinear"}  # tested in test_nn_kernels.py


def test_every_renderer_op_is_tested_here():
    assert set(OPS) == set(UNARY) | set(BINARY) | set(COMPARISONS) | OTHERS | QUANTIZATION


def test_unary_float_ops():
    rng = np.random.default_rng(0)
    feeds = {op: rng.uniform(low, high, (3, 17)).astype(np.float32) for op, (low, high) in UNARY.items()}
    attrs = {"LeakyRelu": {"alpha": 0.3}, "Elu": {"alpha": 0.7}, "HardSigmoid": {"alpha": 0.3, "beta": 0.4},
             "Shrink": {"lambd": 0.8, "bias": 0.3}, "Selu": {"alpha": 1.5, "gamma": 2.0}}
    nodes = [(op, [op], attrs.get(op, {})) for op in UNARY if op != "Clip"]
    nodes.append(("Clip", ["Clip", "low", "high"], {}))
    nodes.append(("Clip", ["Clip", "", "high"], {}))
    constants = {"low": np.float32(-1.5), "high": np.float32(0.5)}
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants), feeds, tolerance={"rtol": 2e-5, "atol": 2e-6})


def test_binary_float_ops_broadcast():
    """Operands of different ranks and broadcast patterns, a scalar among them."""
    a, b, c, s = random((2, 3, 4), seed=1) + 3, random((3, 1), seed=2), random((5, 1, 7), seed=3), random((), seed=4)
    d = random((1, 6, 1), seed=5)
    feeds = {"a": a, "b": b, "c": c, "d": d, "s": s}
    nodes = [(op, ["a", "b"], {}) for op in BINARY if op != "Mod"] + [(op, ["c", "d"], {}) for op in BINARY[:4]]
    nodes += [("Mod", ["a", "b"], {"fmod": 1}), ("Mod", ["a", "b"], {"fmod": 0}), ("Add", ["s", "a"], {}),
              ("Pow", ["a", "s"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds)


def test_variadic_ops_and_comparisons():
    a, b, c = random((4, 5), seed=1), random((5,), seed=2), random((4, 1), seed=3)
    b[:2] = a[0, :2]  # some equal elements
    feeds = {"a": a, "b": b, "c": c}
    nodes = [(op, ["a", "b", "c"], {}) for op in ("Sum", "Mean", "Max", "Min")] + [("Max", ["a"], {})]
    nodes += [(op, ["a", "b"], {}) for op in COMPARISONS]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, exact=False)


def test_nan_and_infinity():
    x = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 65504.0], np.float32)
    y = np.array([1.0, np.nan, -1.0, 3.0, 0.0, np.nan, 2.0, -np.inf], np.float32)
    feeds = {"x": x, "y": y}
    nodes = [("IsInf", ["x"], attrs) for attrs in ({}, {"detect_negative": 0}, {"detect_positive": 0})]
    nodes += [("IsNaN", ["x"], {}), ("Sign", ["x"], {}), ("Max", ["x", "y"], {}), ("Min", ["x", "y"], {}),
              ("Relu", ["x"], {}), ("Clip", ["x", "y"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, opset=20), feeds, exact=True)


def test_bool_ops_and_where():
    rng = np.random.default_rng(2)
    p, q = rng.integers(0, 2, (3, 4)).astype(bool), rng.integers(0, 2, (4,)).astype(bool)
    a, b = random((3, 4), seed=1), random((3, 1), seed=2)
    i, j = random((3, 4), np.int64, seed=3), random((4,), np.int64, seed=4)
    feeds = {"p": p, "q": q, "a": a, "b": b, "i": i, "j": j}
    nodes = [(op, ["p", "q"], {}) for op in ("And", "Or", "Xor", "Equal")] + [("Not", ["p"], {})]
    nodes += [("Where", ["p", "a", "b"], {}), ("Where", ["q", "i", "j"], {}), ("Where", ["p", "q", "p"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, exact=True)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
def test_integer_ops():
    a8 = np.array([7, -7, 7, -7, 5, -128, 100, 3], np.int8)
    b8 = np.array([3, 3, -3, -3, 0, -1, 100, 2], np.int8)
    a32, b32 = random((4, 6), np.int32, seed=1), random((6,), np.int32, seed=2)
    u, v = np.array([1, 2, 255, 16, 9], np.uint8), np.array([1, 3, 4, 2, 8], np.uint8)
    e = np.array([0, 1, 3, 2, 1, 0], np.int32)
    feeds = {"a8": a8, "b8": b8, "a32": a32, "b32": b32, "u": u, "v": v, "e": e}
    nodes = [(op, ["a8", "b8"], {}) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min")]
    nodes += [(op, ["a32", "b32"], {}) for op in ("Add", "Sub", "Mul", "Max", "Min", "BitwiseAnd", "BitwiseOr",
                                                  "BitwiseXor", "Greater", "Equal")]
    nodes += [(op, ["a32"], {}) for op in ("Abs", "Neg", "Relu", "Sign", "BitwiseNot")]
    nodes += [("Mod", ["a8", "b8"], {"fmod": 1}), ("Mod", ["a8", "b8"], {"fmod": 0}), ("Pow", ["a32", "e"], {})]
    nodes += [("BitShift", ["u", "v"], {"direction": "LEFT"}), ("BitShift", ["u", "v"], {"direction": "RIGHT"}),
              ("Div", ["u", "v"], {}), ("Clip", ["a32", "lo", "hi"], {})]
    constants = {"lo": np.int32(-5), "hi": np.int32(7)}
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants), feeds, exact=True)


def test_integer_division_by_zero_and_minus_one_never_traps():
    a = np.array([7, -7, 5, np.iinfo(np.int64).min, 9], np.int64)
    b = np.array([2, 2, 0, -1, -1], np.int64)
    outputs = run_gpu(nodes_model([("Div", ["a", "b"], {}), ("Mod", ["a", "b"], {})], {"a": a, "b": b}),
                      {"a": a, "b": b})
    assert outputs["Div_0"].tolist() == [3, -3, 0, np.iinfo(np.int64).min, -9]
    assert outputs["Mod_1"].tolist() == [1, 1, 0, 0, 0]


def test_batch_normalization_inference():
    x = random((2, 3, 4, 5))
    scale, bias, mean = random((3,), seed=1), random((3,), seed=2), random((3,), seed=3)
    var = np.abs(random((3,), seed=4)) + 0.5
    feeds = {"x": x, "scale": scale, "bias": bias, "mean": mean, "var": var}
    nodes = [("BatchNormalization", ["x", "scale", "bias", "mean", "var"], {"epsilon": 1e-3})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, opset=15), feeds)
