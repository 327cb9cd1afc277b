"""square-powers: Pow by a constant 2 becomes a multiply with the same results; other exponents stay."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.ir.graph import Graph, Value
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_verified

X = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32) * 1e3


def _pow(exponent: float, dtype=np.float32) -> Graph:
    graph = Graph()
    x = graph.add_input("x", f32(3, 5))
    y = graph.add_node("Pow", [x, graph.add_constant(np.array(exponent, dtype), "e")], version=15, name="square")
    graph.add_output("y", Value(y.name))
    return graph


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_pow_by_two_becomes_a_multiply(dtype):
    expected = Graph()
    x = expected.add_input("x", f32(3, 5))
    expected.add_output("y", Value(expected.add_node("Mul", [x, x], version=14, name="square").name))
    before = _pow(2, dtype)
    after = run_verified("square-powers", before.copy())
    assert_same_graph(after, expected)
    assert_same_results(before, after, {"x": X})


@pytest.mark.parametrize("exponent", [3.0, 0.5, 2.5])
def test_other_exponents_stay(exponent):
    before = _pow(exponent)
    assert_same_graph(run_verified("square-powers", before.copy()), before)
