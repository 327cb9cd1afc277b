"""Elementwise cpu kernels beside the ref target: broadcasting, integer ops, no traps on bad data."""

import numpy as np
import pytest

from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, random, run_cpu


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (3, 1)), ((5, 1, 7), (1, 6, 1)), ((), (3,))])
def test_binary_float_broadcasting(op, shapes):
    a, b = random(shapes[0], seed=1) + 2, random(shapes[1], seed=2)
    assert_cpu_matches_ref(node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


def test_prelu_slope_per_channel():
    x, slope = random((2, 3, 5)), random((3, 1), seed=3)
    assert_cpu_matches_ref(node_model("PRelu", {"x": x, "slope": slope}), {"x": x, "slope": slope})


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Abs", "Neg", "Softplus", "HardSwish"])
def test_unary_float(op):
    x = random((3, 17))
    assert_cpu_matches_ref(node_model(op, {"x": x}), {"x": x})


@pytest.mark.parametrize("fmod", [0, 1])
def test_integer_mod_signs_and_zero_divisor(fmod):
    a = np.array([7, -7, 7, -7, 5, np.iinfo(np.int32).min], np.int32)
    b = np.array([3, 3, -3, -3, 0, -1], np.int32)
    y = run_cpu(node_model("Mod", {"a": a, "b": b}, attrs={"fmod": fmod}), {"a": a, "b": b})["y"]
    expected = np.fmod(a[:4], b[:4]) if fmod else np.mod(a[:4], b[:4])
    assert y[:4].tolist() == expected.tolist()
    assert y[4:].tolist() == [0, 0]  # no SIGFPE: a zero (or -1) divisor gives 0


def test_bitwise_and_shift():
    a = np.array([1, 2, 255, 16], np.uint8)
    b = np.array([1, 3, 4, 2], np.uint8)
    for op, attrs in [("BitShift", {"direction": "LEFT"}), ("BitShift", {"direction": "RIGHT"}), ("BitwiseXor", {})]:
        model = node_model(op, {"a": a, "b": b}, attrs=attrs, opset=18)
        assert_cpu_matches_ref(model, {"a": a, "b": b}, exact=True)


def test_integer_division_truncates_and_never_traps():
    a = np.array([7, -7, 7, -7, 5, np.iinfo(np.int64).min], np.int64)
    b = np.array([2, 2, -2, -2, 0, -1], np.int64)
    y = run_cpu(node_model("Div", {"a": a, "b": b}), {"a": a, "b": b})["y"]
    assert y.tolist() == [3, -3, -3, 3, 0, np.iinfo(np.int64).min]  # min / -1 wraps, like x86 would not trap
