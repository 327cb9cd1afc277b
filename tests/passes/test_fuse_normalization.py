"""fuse-normalization: Softmax and LayerNormalization (also written out) take the elementwise ops before them."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.driver import optimize
from compiler.ir.graph import KILN_DOMAIN, Graph, Value
from compiler.ops.interpreter import Interpreter
from compiler.passes.infer_types import infer_types
from compiler.targets.cpu import CpuTarget
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_verified

RNG = np.random.default_rng(0)
GAMMA = RNG.standard_normal(8).astype(np.float32)
BETA = RNG.standard_normal(8).astype(np.float32)
FEEDS = {"x": RNG.standard_normal((2, 3, 8)).astype(np.float32), "r": RNG.standard_normal((2, 3, 8)).astype(np.float32),
         "mask": RNG.standard_normal((2, 1, 8)).astype(np.float32)}


def _fused(graph: Graph, op_type: str, inputs, attrs: dict, version: int, output: str = "y") -> Value:
    node = graph.add_node(op_type, inputs, attrs, domain=KILN_DOMAIN, version=version, name=output,
                          output_names=[output])
    return Value(node.name)


def _scaled_masked_softmax(axis: int = -1) -> Graph:
    """y = Softmax(x * 0.25 + mask), the mask broadcasting over axis 1."""
    graph = Graph()
    x, mask = graph.add_input("x", f32(2, 3, 8)), graph.add_input("mask", f32(2, 1, 8))
    scaled = graph.add_node("Mul", [x, graph.add_constant(np.array(0.25, np.float32), "scale")], version=14,
                            name="scaled")
    masked = graph.add_node("Add", [Value(scaled.name), mask], version=14, name="masked")
    graph.add_output("y", Value(graph.add_node("Softmax", [Value(masked.name)], {"axis": axis}, version=13,
                                               name="y").name))
    return graph


def test_scale_and_mask_fuse_into_the_softmax():
    expected = Graph()
    x, mask = expected.add_input("x", f32(2, 3, 8)), expected.add_input("mask", f32(2, 1, 8))
    scale = expected.add_constant(np.array(0.25, np.float32), "scale")
    steps = [["Mul", 14, [], [0, 1]], ["Add", 14, [], [3, 2]]]
    attrs = {"axis": -1, "prologue": steps, "fused_nodes": ["scaled", "masked", "y"]}
    expected.add_output("y", _fused(expected, "FusedSoftmax", [x, scale, mask], attrs, 13))

    after = run_verified("fuse-normalization", _scaled_masked_softmax())
    assert_same_graph(after, expected)
    assert_same_results(_scaled_masked_softmax(), after, FEEDS)


def test_a_softmax_over_another_axis_is_left_alone():
    before = _scaled_masked_softmax(axis=1)
    after = run_verified("fuse-normalization", _scaled_masked_softmax(axis=1))
    assert_same_graph(after, before)


def _residual_layer_norm(keep_sum: bool = False) -> Graph:
    """y = LayerNormalization(x + r); with keep_sum the sum is a graph output too."""
    graph = Graph()
    x, r = graph.add_input("x", f32(2, 3, 8)), graph.add_input("r", f32(2, 3, 8))
    total = Value(graph.add_node("Add", [x, r], version=14, name="residual").name)
    gamma, beta = graph.add_constant(GAMMA, "gamma"), graph.add_constant(BETA, "beta")
    norm = graph.add_node("LayerNormalization", [total, gamma, beta], {"axis": -1, "epsilon": 1e-5}, version=17,
                          name="y")
    graph.add_output("y", Value(norm.name))
    if keep_sum:
        graph.add_output("sum", total)
    return graph


def test_the_residual_add_fuses_into_the_layer_norm():
    expected = Graph()
    x, r = expected.add_input("x", f32(2, 3, 8)), expected.add_input("r", f32(2, 3, 8))
    gamma, beta = expected.add_constant(GAMMA, "gamma"), expected.add_constant(BETA, "beta")
    attrs = {"axis": -1, "epsilon": 1e-5, "prologue": [["Add", 14, [], [0, 1]]], "fused_nodes": ["residual", "y"]}
    expected.add_output("y", _fused(expected, "FusedLayerNormalization", [gamma, beta, x, r], attrs, 17))

    after = run_verified("fuse-normalization", _residual_layer_norm())
    assert_same_graph(after, expected)
    assert_same_results(_residual_layer_norm(), after, FEEDS)


def test_a_sum_read_elsewhere_is_not_taken():
    after = run_verified("fuse-normalization", _residual_layer_norm(keep_sum=True))
    assert_same_graph(after, _residual_layer_norm(keep_sum=True))


def test_a_smaller_producer_is_not_recomputed_per_row():
    """mask * 2 has the mask's shape, not X's: it stays a node of its own; only the Add is taken."""
    before = Graph()
    x, mask = before.add_input("x", f32(2, 3, 8)), before.add_input("mask", f32(2, 1, 8))
    doubled = before.add_node("Mul", [mask, before.add_constant(np.array(2.0, np.float32), "two")], version=14,
                              name="doubled")
    masked = before.add_node("Add", [x, Value(doubled.name)], version=14, name="masked")
    before.add_output("y", Value(before.add_node("Softmax", [Value(masked.name)], version=13, name="y").name))

    after = run_verified("fuse-normalization", before)
    assert after.node("doubled").op_type == "Mul"
    assert after.node(dict(after.outputs)["y"].node).attrs["fused_nodes"] == ["masked", "y"]


def _written_out_layer_norm(square: str = "Pow", affine: bool = True, residual: bool = True) -> Graph:
    """LayerNorm over the last axis as exporters write it: ReduceMean, Sub, Pow (or Mul), ReduceMean, Add,
    Sqrt, Div, then Mul(gamma) and Add(beta) when `affine`; of x + r when `residual`, else of x."""
    graph = Graph()
    x, r = graph.add_input("x", f32(2, 3, 8)), graph.add_input("r", f32(2, 3, 8))
    source = Value(graph.add_node("Add", [x, r], version=14, name="residual").name) if residual else x
    axes = graph.add_constant(np.array([-1], np.int64), "axes")
    mean = Value(graph.add_node("ReduceMean", [source, axes], version=18, name="mean").name)
    centered = Value(graph.add_node("Sub", [source, mean], version=14, name="centered").name)
    exponent = graph.add_constant(np.array(2.0, np.float32), "exponent") if square == "Pow" else centered
    squared_inputs = [centered, exponent]
    squared = Value(graph.add_node(square, squared_inputs, version=15, name="squared").name)
    variance = Value(graph.add_node("ReduceMean", [squared, axes], version=18, name="variance").name)
    epsilon = graph.add_constant(np.array(1e-5, np.float32), "epsilon")
    padded = Value(graph.add_node("Add", [variance, epsilon], version=14, name="padded").name)
    std = Value(graph.add_node("Sqrt", [padded], version=13, name="std").name)
    normalized = Value(graph.add_node("Div", [centered, std], version=14, name="normalized").name)
    if affine:
        scaled = Value(graph.add_node("Mul", [normalized, graph.add_constant(GAMMA, "gamma")], version=14,
                                      name="scaled").name)
        normalized = Value(graph.add_node("Add", [graph.add_constant(BETA, "beta"), scaled], version=14,
                                          name="shifted").name)
    graph.add_output("y", normalized)
    return graph


PATTERN = ["mean", "centered", "squared", "variance", "padded", "std", "normalized"]


def _assert_close_results(before: Graph, after: Graph) -> None:
    """The fused kernel multiplies by 1 / std where the pattern divides: equal up to rounding."""
    want, = Interpreter(before).run(FEEDS)
    got, = Interpreter(after).run(FEEDS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_written_out_layer_norm_and_its_residual_become_one_node():
    expected = Graph()
    x, r = expected.add_input("x", f32(2, 3, 8)), expected.add_input("r", f32(2, 3, 8))
    gamma, beta = expected.add_constant(GAMMA, "gamma"), expected.add_constant(BETA, "beta")
    attrs = {"axis": 2, "epsilon": float(np.float32(1e-5)), "prologue": [["Add", 14, [], [0, 1]]],
             "fused_nodes": ["residual", *PATTERN, "scaled", "shifted"]}
    expected.add_output("y", _fused(expected, "FusedLayerNormalization", [gamma, beta, x, r], attrs, 17,
                                    output="shifted"))

    after = run_verified("fuse-normalization", _written_out_layer_norm())
    assert_same_graph(after, expected)
    _assert_close_results(_written_out_layer_norm(), after)


def test_a_written_out_layer_norm_without_scale_and_bias_scales_by_one():
    expected = Graph()
    x = expected.add_input("x", f32(2, 3, 8))
    expected.add_input("r", f32(2, 3, 8))
    scale = expected.add_constant(np.ones(1, np.float32), "normalized.scale")
    attrs = {"axis": 2, "epsilon": float(np.float32(1e-5)), "prologue": [], "fused_nodes": PATTERN}
    expected.add_output("y", _fused(expected, "FusedLayerNormalization", [scale, None, x], attrs, 17,
                                    output="normalized"))

    before = _written_out_layer_norm(square="Mul", affine=False, residual=False)
    after = run_verified("fuse-normalization", before)
    assert_same_graph(after, expected)
    _assert_close_results(_written_out_layer_norm(square="Mul", affine=False, residual=False), after)


def test_a_pattern_value_read_elsewhere_keeps_the_pattern():
    before = _written_out_layer_norm(residual=False)
    before.add_output("variance", Value("variance"))
    after = run_verified("fuse-normalization", before.copy())
    assert_same_graph(after, before)


@pytest.mark.parametrize("disable", [[], ["fuse-normalization"]])
def test_on_in_the_cpu_pipeline_and_switchable_off(disable):
    names = [spec.name for spec in CpuTarget().pipeline({})]
    assert names.index("fuse-epilogues") < names.index("fuse-normalization") < names.index("fuse-elementwise")
    graph = optimize(infer_types(_written_out_layer_norm()), "cpu", disable=disable)
    ops = {node.qualified_op for node in graph.nodes()}
    assert ("kiln::FusedLayerNormalization" in ops) == (not disable)
