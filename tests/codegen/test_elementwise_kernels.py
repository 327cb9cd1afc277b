"""Elementwise cpu kernels beside the ref target: broadcasting, integer ops, no traps on bad data."""

import platform

import numpy as np
import pytest

import compiler
import runtime
from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, optimized_kernels, random, run_cpu


@pytest.mark.parametrize("rows", [1, 6])
def test_a_loop_computed_in_place_vectorizes_without_overlap_checks(rows):
    """An elementwise kernel whose output overwrites its input reads that input at the output's own
    index, so LLVM sees one address: a runtime overlap check would fail on it (the two ranges are the
    same) and send every element down the scalar loop, 10x slower for Gelu's Erf form."""
    from onnx import helper, numpy_helper

    columns = 16384 // rows
    weights = [numpy_helper.from_array(random(shape, seed=3), name) for name, shape in (("w", (32, columns)),
                                                                                        ("v", (columns, 4)))]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Erf", ["m"], ["e"]),
             helper.make_node("MatMul", ["e", "v"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [rows, 32])],
                              [helper.make_tensor_value_info("y", 1, None)], initializer=weights)
    tasks, lowered, plan = optimized_kernels(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                                            disable=["fuse-epilogues"])
    assert [lowered.node(name).op_type for name in plan.in_place] == ["Erf"]
    task = next(text for name, text in tasks.items() if name.endswith("_erf"))
    assert "vector.body" in task and "diff.check" not in task and "memcheck" not in task


def test_short_rows_of_a_channel_broadcast_load_whole_vectors():
    """A per-channel scale on a blocked layout ([N, C / c, H * W, c] times [1, C / c, 1, c]) coalesces into rows
    of c elements: the kernel loads each row as vectors, where unrolling the short row loop once let LLVM
    vectorize across rows with gathers and scatters (14x the time on AMD Zen 4) or not at all."""
    x, scale = random((1, 4, 64, 16)), random((1, 4, 1, 16), seed=1)
    tasks, _, _ = optimized_kernels(node_model("Mul", {"x": x}, {"s": scale}))
    task = next(text for name, text in tasks.items() if name.endswith("_mul"))
    assert "gather" not in task and "scatter" not in task
    assert "fmul <" in task


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (3, 1)), ((5, 1, 7), (1, 6, 1)), ((), (3,))])
def test_binary_float_broadcasting(op, shapes):
    a, b = random(shapes[0], seed=1) + 2, random(shapes[1], seed=2)
    assert_cpu_matches_ref(node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("shapes", [((3, 10001), (3, 10001)), ((2, 20000), (20000,)), ((8200,), ())])
def test_long_rows_split_into_pieces(shapes):
    """Rows longer than broadcast.PIECE are computed in pieces by several work items (one shape
    coalesces into a single row): the partial last piece and broadcast operands included."""
    from compiler.codegen.llvm.kernels.broadcast import PIECE, row_count

    assert row_count(shapes[0], shapes) > 1 and max(map(np.prod, shapes)) > PIECE
    a, b = random(shapes[0], seed=1), random(shapes[1], seed=2)
    assert_cpu_matches_ref(node_model("Add", {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("shapes", [((2, 3, 67, 16), (1, 3, 1, 16)), ((3, 70, 8), (3, 1, 8)), ((4, 9, 16), (4, 1, 16))])
def test_short_rows_are_grouped_per_work_item(shapes):
    """Rows shorter than broadcast.GROUP_ELEMENTS (a blocked NCHWc tensor times per-channel constants) are
    computed a group of rows per work item, the last group partial (67 rows: 33, 33 and 1)."""
    from compiler.codegen.llvm.kernels.broadcast import row_count

    assert row_count(shapes[0], shapes) < np.prod(shapes[0][:-1])
    a, b = random(shapes[0], seed=1), random(shapes[1], seed=2)
    assert_cpu_matches_ref(node_model("Mul", {"a": a, "b": b}), {"a": a, "b": b})


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


@pytest.mark.parametrize("op, low, high", [("Acos", -1, 1), ("Asin", -1, 1), ("Atan", -9, 9), ("Acosh", 1, 9),
                                           ("Asinh", -9, 9), ("Atanh", -0.99, 0.99), ("Cosh", -9, 9),
                                           ("Sinh", -9, 9), ("Tan", -1.5, 1.5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_libm_unary(op, low, high, dtype):
    x = np.random.default_rng(4).uniform(low, high, (3, 11)).astype(dtype)
    assert_cpu_matches_ref(node_model(op, {"x": x}), {"x": x})


SPECIALS = [0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 65504.0]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("attrs", [{}, {"detect_negative": 0}, {"detect_positive": 0},
                                   {"detect_negative": 0, "detect_positive": 0}])
def test_is_inf_and_is_nan(dtype, attrs):
    x = np.array(SPECIALS, dtype)
    assert_cpu_matches_ref(node_model("IsInf", {"x": x}, attrs=attrs, opset=20), {"x": x}, exact=True)
    assert_cpu_matches_ref(node_model("IsNaN", {"x": x}, opset=20), {"x": x}, exact=True)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int8, np.int64, np.uint8])
def test_sign(dtype):
    x = np.array(SPECIALS, dtype) if np.issubdtype(dtype, np.floating) else random((13,), dtype)
    y = assert_cpu_matches_ref(node_model("Sign", {"x": x}, opset=13), {"x": x}, exact=True)["y"]
    assert not np.signbit(y[:2]).any()  # numpy.sign(-0.0) is +0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int32, np.uint16])
@pytest.mark.parametrize("attrs", [{}, {"lambd": 1.5}, {"lambd": 2.0, "bias": 1.5}])
def test_shrink(dtype, attrs):
    x = random((4, 9), dtype) if np.issubdtype(dtype, np.integer) else random((4, 9), dtype) * 3
    x = np.abs(x) if np.issubdtype(dtype, np.unsignedinteger) else x
    assert_cpu_matches_ref(node_model("Shrink", {"x": x}, attrs=attrs), {"x": x}, exact=True)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64])
@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_bit_shift_edges(dtype, direction):
    """Negative inputs, wrapping left shifts and shifts < 0 or >= the bit width, against onnx.reference."""
    bits, info = np.iinfo(dtype).bits, np.iinfo(dtype)
    a = np.array([1, 3, info.max, info.min, -8 if info.min else 8, -1 if info.min else 200, 5, 7], dtype)
    shifts = [0, 1, bits - 1, 1, bits, bits + 3, info.max, -1 if info.min else info.max - 1]
    b = np.array(shifts, dtype)
    model = node_model("BitShift", {"a": a, "b": b}, attrs={"direction": direction}, opset=28)  # signed types: opset 28
    assert_cpu_matches_ref(model, {"a": a, "b": b}, exact=True)


@pytest.mark.parametrize("base_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("exponent_dtype", [np.int32, np.int64, np.uint8, np.float32])
def test_integer_pow(base_dtype, exponent_dtype):
    """Exact wrapping integer powers (3 ** 40 overflows) and int ** float through float64, as numpy."""
    a = np.array([[1, 2, -3, 0, 3, -1, 7]], base_dtype)
    b = np.array([[4], [0], [5], [40]], exponent_dtype)
    model = node_model("Pow", {"a": a, "b": b}, opset=15)
    if exponent_dtype == np.float32:
        b = b[:3]  # 3.0 ** 40 is out of the integer range, where numpy's cast is undefined
        model = node_model("Pow", {"a": a, "b": b}, opset=15)
    assert_cpu_matches_ref(model, {"a": a, "b": b}, exact=True)


def test_integer_pow_negative_exponent_truncates():
    """numpy refuses negative integer exponents; the cpu target gives C's (int)pow(x, y) and never traps."""
    a = np.array([1, -1, -1, 2, -2, 0, 5], np.int32)
    b = np.array([-3, -3, -2, -1, -4, -1, -2], np.int32)
    y = run_cpu(node_model("Pow", {"a": a, "b": b}, opset=15), {"a": a, "b": b})["y"]
    assert y.tolist() == [1, -1, 1, 0, 0, 0, 0]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_mod_takes_the_divisor_sign(dtype):
    """fmod=0 on floats is numpy.mod: signed zeros, infinite divisors, NaN for a zero divisor or infinite dividend."""
    a = np.array([0, -0.0, 0, -0.0, -3, 3, -1, 1, np.inf, -np.inf, 1, 1, np.nan, 1, -4.3, 7.2, 5, 4.5], dtype)
    b = np.array([-2, 2, 2, -2, np.inf, np.inf, -np.inf, -np.inf, 2, 2, 0, -0.0, 2, np.nan, 2.1, -3.4, 8, 1.5], dtype)
    model = node_model("Mod", {"a": a, "b": b}, attrs={"fmod": 0})
    y = assert_cpu_matches_ref(model, {"a": a, "b": b}, exact=True)["y"]
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_array_equal(np.signbit(y), np.signbit(np.mod(a, b)))


@pytest.mark.parametrize("op, attrs", [("Add", {}), ("Mul", {}), ("Div", {}), ("Max", {}), ("Min", {}),
                                       ("Mod", {"fmod": 1}), ("Mod", {"fmod": 0}), ("Pow", {}), ("Equal", {})])
def test_float16_binary_is_numpy_exact(op, attrs):
    """float16 math is done in float32 and rounded once, which is what numpy does for float16."""
    a, b = random((3, 1, 9), np.float16, seed=5) * 4, random((4, 1), np.float16, seed=6) * 4
    a = np.abs(a) if op == "Pow" else a
    assert_cpu_matches_ref(node_model(op, {"a": a, "b": b}, attrs=attrs), {"a": a, "b": b}, exact=True)


@pytest.mark.parametrize("op", ["Sqrt", "Exp", "Sigmoid", "Tanh", "Neg", "Abs", "Relu", "Floor", "Reciprocal"])
def test_float16_unary(op):
    x = random((5, 13), np.float16, seed=7)
    x = np.abs(x) if op == "Sqrt" else x
    want = runtime.load(compiler.compile(node_model(op, {"x": x}), target="ref")).infer({"x": x})["y"]
    got = run_cpu(node_model(op, {"x": x}), {"x": x})["y"]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 without F16C")
def test_float16_links_without_f16c():
    """Without F16C, LLVM converts half through libgcc's __extendhfsf2/__truncsfhf2; the system cc must resolve them."""
    a, b = random((2, 7), np.float16, seed=8), random((2, 7), np.float16, seed=9)
    model = node_model("Mod", {"a": a, "b": b}, attrs={"fmod": 0})
    artifact = compiler.compile(model, target="cpu", cpu="x86-64", features="-f16c")
    y = runtime.load(artifact).infer({"a": a, "b": b})["y"]
    np.testing.assert_array_equal(y, np.mod(a, b))
