"""cpu MatMul and Gemm kernels against the ref target, bit-identical at 1 and 2 threads.

Sizes are odd on purpose: they leave partial row groups (8), k steps (4), k blocks (128) and
column blocks (256) in the tiled loop nest.
"""

import numpy as np
import pytest

import compiler
import runtime
from compiler.driver import UnsupportedByTargetError, optimize
from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, random

MATMUL_SHAPES = [
    ((1, 1), (1, 1)),
    ((7, 33), (33, 65)),
    ((65, 300), (300, 270)),  # several k blocks and column blocks, one leftover row
    ((33,), (33, 5)),  # 1-D operands: numpy promotion and demotion
    ((4, 5), (5,)),
    ((33,), (33,)),
    ((3, 65, 33), (33, 7)),  # one B for every A: the batch folds into the rows
    ((2, 3, 7, 9), (3, 9, 4)),  # batch broadcasting
    ((2, 1, 3, 4), (5, 4, 6)),
    ((5,), (2, 5, 3)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("a_shape, b_shape", MATMUL_SHAPES)
def test_matmul(a_shape, b_shape):
    feeds = {"a": random(a_shape, seed=1), "b": random(b_shape, seed=2)}
    assert_cpu_matches_ref(node_model("MatMul", feeds), feeds)


def test_matmul_float64_with_constant_weights():
    a = random((9, 17), np.float64)
    model = node_model("MatMul", {"a": a}, constants={"w": random((17, 33), np.float64, seed=3)})
    assert_cpu_matches_ref(model, {"a": a})


# (A shape, B shape, C shape or None, attributes)
GEMM_CASES = [
    ((7, 33), (33, 65), None, {}),
    ((7, 33), (33, 65), (65,), {"alpha": 0.5, "beta": 2.0}),
    ((33, 7), (33, 65), (7, 65), {"transA": 1}),
    ((7, 33), (65, 33), (1, 65), {"transB": 1, "alpha": -1.5}),
    ((33, 7), (65, 33), (7, 1), {"transA": 1, "transB": 1, "beta": 0.25}),
    ((1, 300), (270, 300), (), {"transB": 1}),  # a fully connected layer: transposed B is packed
    ((65, 1), (1, 9), (1, 1), {}),
]


@pytest.mark.parametrize("a_shape, b_shape, c_shape, attrs", GEMM_CASES)
def test_gemm(a_shape, b_shape, c_shape, attrs):
    feeds = {"a": random(a_shape, seed=1), "b": random(b_shape, seed=2)}
    if c_shape is not None:
        feeds["c"] = random(c_shape, seed=3)
    assert_cpu_matches_ref(node_model("Gemm", feeds, attrs=attrs), feeds)


def test_gemm_float64():
    feeds = {"a": random((5, 11), np.float64), "b": random((7, 11), np.float64, seed=2),
             "c": random((7,), np.float64, seed=3)}
    assert_cpu_matches_ref(node_model("Gemm", feeds, attrs={"transB": 1, "alpha": 2.0}), feeds)


# (op, A shape, constant B shape, constant C shape or None, attributes): B packed at compile time
PACKED_CASES = [
    ("MatMul", (7, 60), (60, 250), None, {}),  # k past whole vectors, columns past whole panels
    ("MatMul", (3, 65, 64), (64, 96), None, {}),  # the batch folds into the rows
    ("MatMul", (65, 300), (300, 270), None, {}),  # several k blocks and column blocks
    ("Gemm", (7, 60), (250, 60), (250,), {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    ("Gemm", (60, 7), (60, 96), None, {"transA": 1}),
]


@pytest.mark.parametrize("op_type, a_shape, b_shape, c_shape, attrs", PACKED_CASES)
def test_constant_weights_packed_at_compile_time_give_the_same_bits(op_type, a_shape, b_shape, c_shape, attrs):
    """pack-gemm-weights changes where B is read from, not the sums: the same bits as packing it at run time."""
    feeds = {"a": random(a_shape, seed=1)}
    constants = {"b": random(b_shape, seed=2), **({"c": random(c_shape, seed=3)} if c_shape else {})}
    model = node_model(op_type, feeds, constants=constants, attrs=attrs)
    (node,) = [n for n in optimize(model, "cpu").nodes() if n.op_type == f"Fused{op_type}"]
    assert node.attrs["packed_weights"] > 0 and node.attrs["weights_shape"] == list(b_shape)
    actual = assert_cpu_matches_ref(model, feeds)
    unpacked = runtime.load(compiler.compile(model, target="cpu", disable=["pack-gemm-weights"])).infer(feeds)
    np.testing.assert_array_equal(actual["y"], unpacked["y"])


def test_integer_matmul_is_rejected_with_a_reason():
    feeds = {"a": random((2, 3), np.int32), "b": random((3, 2), np.int32)}
    with pytest.raises(UnsupportedByTargetError, match="float32/float64 only"):
        compiler.compile(node_model("MatMul", feeds), target="cpu")
