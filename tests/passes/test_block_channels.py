"""block-channels: conv chains run as kiln::BlockedConv in the NCHWc layout, converted only at their ends."""

from __future__ import annotations

from collections import Counter

import numpy as np

from compiler.codegen.llvm.kernels.gemm_microkernel import vector_lanes
from compiler.ir.graph import Graph, Value
from compiler.ops.blocked_conv import from_blocked, pack_weights, to_blocked, unpack_weights
from compiler.ops.interpreter import Interpreter
from compiler.passes.fuse_epilogues import fuse_epilogues
from compiler.passes.infer_types import infer_types
from compiler.passes.manager import PassManager, PassSpec, VerifyInstrument
from tests.passes.conftest import assert_same_results, f32, run_verified


def _run(graph: Graph) -> Graph:
    """block-channels rewriting every group however small, then verified."""
    return PassManager([PassSpec("block-channels", {"flops_per_conversion": 0})], [VerifyInstrument()]).run(
        infer_types(graph))

LANES = vector_lanes("float32")
RNG = np.random.default_rng(0)


def _conv(graph: Graph, x: Value, in_channels: int, out_channels: int, name: str, **attrs) -> Value:
    kernel = attrs.pop("kernel", 3)
    weights = RNG.standard_normal((out_channels, in_channels // attrs.get("group", 1), kernel, kernel))
    w = graph.add_constant(weights.astype(np.float32), f"{name}.w")
    attrs.setdefault("pads", [kernel // 2] * 4)
    return Value(graph.add_node("Conv", [x, w], attrs, version=11, name=name).name)


def _assert_close(before: Graph, after: Graph, feeds: dict) -> None:
    """Same outputs up to rounding (the padded or blocked conv sums its products in another order)."""
    for got, want in zip(Interpreter(after).run(feeds), Interpreter(before).run(feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _ops(graph: Graph) -> list[str]:
    return [node.op_type for node in graph.topological_order() if not (node.is_constant or node.is_input)]


def _chain() -> Graph:
    """x -> conv a -> conv b -> y, and a Relu reading a's output: a's plain form feeds the Relu."""
    graph = Graph()
    x = graph.add_input("x", f32(1, LANES, 6, 7))
    a = _conv(graph, x, LANES, 2 * LANES, "a")
    b = _conv(graph, a, 2 * LANES, LANES, "b", kernel=1)
    graph.add_output("y", b)
    graph.add_output("z", Value(graph.add_node("Relu", [a], version=14, name="z").name))
    return graph


def test_a_chain_is_blocked_between_one_conversion_in_and_one_out_per_value():
    before = _chain()
    after = _run(before.copy())
    assert Counter(_ops(after)) == {"BlockedConv": 2, "Reshape": 3, "Transpose": 3, "Relu": 1}  # x in, y and a out
    second = next(node for node in after.nodes() if node.attrs.get("fused_nodes") == ["b"])
    assert after.type_of(after.input_values(second)[0]).shape == (1, 2, 6, 7, LANES)
    feeds = {"x": RNG.standard_normal((1, LANES, 6, 7)).astype(np.float32)}
    assert_same_results(before, after, feeds)


def test_a_group_whose_convs_do_too_little_for_its_conversions_is_left_as_it_is():
    assert _ops(run_verified("block-channels", _chain())) == ["Conv", "Conv", "Relu"]


def test_grouped_convs_and_too_few_channels_stay_plain():
    graph = Graph()
    x = graph.add_input("x", f32(1, 2 * LANES, 5, 5))
    grouped = _conv(graph, x, 2 * LANES, 2 * LANES, "grouped", group=2)
    few = _conv(graph, grouped, 2 * LANES, LANES - 1, "few")
    graph.add_output("y", _conv(graph, few, LANES - 1, LANES - 1, "last"))
    assert _ops(_run(graph)) == ["Conv", "Conv", "Conv"]


def _padded(between: str) -> Graph:
    """x -> conv (LANES + 3 channels) -> `between` -> conv -> y; the first conv's output also leaves as z."""
    graph = Graph()
    x = graph.add_input("x", f32(1, LANES, 6, 6))
    a = _conv(graph, x, LANES, LANES + 3, "a")
    middle = Value(graph.add_node(between, [a], version=13, name="middle").name)
    graph.add_output("y", _conv(graph, middle, LANES + 3, LANES, "b", kernel=1))
    graph.add_output("z", a)
    return graph


def test_channels_off_the_vector_width_are_padded_to_whole_blocks_and_sliced_on_the_way_out():
    before = _padded("Relu")
    after = _run(before.copy())
    assert Counter(_ops(after)) == {"BlockedConv": 2, "Relu": 1, "Reshape": 3, "Transpose": 3, "Slice": 1}
    relu = next(node for node in after.nodes() if node.op_type == "Relu")
    assert relu.outputs[0].shape == (1, 2, 6, 6, LANES)
    convs = [node for node in after.nodes() if node.op_type == "BlockedConv"]
    packed = [after.type_of(after.input_values(node)[1]).shape for node in convs]
    assert [shape[1] * shape[4] for shape in packed] == [LANES, 2 * LANES]  # b reads its padded input channels
    _assert_close(before, after, {"x": RNG.standard_normal((1, LANES, 6, 6)).astype(np.float32)})


def test_padded_channels_are_read_only_by_ops_that_keep_them_finite():
    """Log(0) of a padded channel would be -inf, and -inf times a zero weight NaN: Log reads the plain value."""
    after = _run(_padded("Log"))
    assert [node.op_type for node in after.topological_order() if node.op_type in ("Log", "Slice")] == ["Slice", "Log"]
    assert Counter(_ops(after))["BlockedConv"] == 2


def test_a_fused_residual_and_a_stem_image_are_read_as_they_are():
    """stem (3 channels, plain image) -> a; b = Relu(conv(a) + a): the residual is a's blocked output."""
    graph = Graph()
    x = graph.add_input("x", f32(2, 3, 8, 8))
    a = _conv(graph, x, 3, LANES, "a", kernel=7)
    b = _conv(graph, a, LANES, LANES, "b")
    total = graph.add_node("Add", [b, a], version=14, name="sum")
    graph.add_output("y", Value(graph.add_node("Relu", [Value(total.name)], version=14, name="y").name))
    before = graph.copy()
    after = _run(fuse_epilogues(infer_types(graph)))
    assert _ops(after) == ["BlockedConv", "BlockedConv", "Transpose", "Reshape"]
    stem, block = [node for node in after.topological_order() if node.op_type == "BlockedConv"]
    assert after.input_values(stem)[0] == Value("x")
    assert after.input_values(block)[0] == after.input_values(block)[3] == Value(stem.name)
    feeds = {"x": RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)}
    _assert_close(before, after, feeds)


def test_layout_helpers_round_trip():
    value = RNG.standard_normal((2, 2 * LANES, 3, 5))
    assert to_blocked(value, LANES).shape == (2, 2, 3, 5, LANES)
    np.testing.assert_array_equal(from_blocked(to_blocked(value, LANES)), value)
    weights = RNG.standard_normal((4 * LANES, 2 * LANES, 3, 3))
    assert pack_weights(weights, LANES, 2 * LANES).shape == (2, 2, 3, 3, LANES, 2 * LANES)
    np.testing.assert_array_equal(unpack_weights(pack_weights(weights, LANES, 2 * LANES)), weights)


def test_a_slice_of_the_image_runs_on_the_blocked_value():
    """subsample-pointwise's strided Slice before a 1x1 conv: the Slice takes the blocked value, so the conv reads
    contiguous pixels and no conversion sits between the convs."""
    graph = Graph()
    x = graph.add_input("x", f32(1, LANES, 8, 8))
    a = _conv(graph, x, LANES, 2 * LANES, "a")
    operands = [graph.add_constant(np.array(v, np.int64), name) for v, name in
                (([0, 0], "starts"), ([8, 8], "ends"), ([-2, -1], "axes"), ([2, 2], "steps"))]
    sliced = Value(graph.add_node("Slice", [a, *operands], version=13, name="subsample").name)
    graph.add_output("y", _conv(graph, sliced, 2 * LANES, LANES, "b", kernel=1))
    before = graph.copy()
    after = _run(graph)
    assert Counter(_ops(after)) == {"BlockedConv": 2, "Slice": 1, "Reshape": 2, "Transpose": 2}
    assert next(n for n in after.nodes() if n.op_type == "Slice").outputs[0].shape == (1, 2, 4, 4, LANES)
    _assert_close(before, after, {"x": RNG.standard_normal((1, LANES, 8, 8)).astype(np.float32)})


def _lrn_between(channels: int, **attrs) -> Graph:
    """x -> conv -> LRN -> conv -> y."""
    graph = Graph()
    x = graph.add_input("x", f32(1, LANES, 5, 6))
    a = _conv(graph, x, LANES, channels, "a")
    lrn = Value(graph.add_node("LRN", [a], {"size": 5, "alpha": 0.5, "beta": 0.75, "bias": 1.0, **attrs},
                               version=13, name="lrn").name)
    graph.add_output("y", _conv(graph, lrn, channels, LANES, "b", kernel=1))
    return graph


def test_an_lrn_between_convs_runs_on_the_blocked_value():
    before = _lrn_between(3 * LANES)
    after = _run(before.copy())
    assert Counter(_ops(after)) == {"BlockedConv": 2, "BlockedLRN": 1, "Reshape": 2, "Transpose": 2}
    _assert_close(before, after, {"x": RNG.standard_normal((1, LANES, 5, 6)).astype(np.float32)})


def test_an_lrn_over_padded_channels_or_too_wide_a_window_reads_the_plain_value():
    """A padded channel's square would join its neighbours' windows; a window wider than 2c + 1 channels reaches
    past the blocks on either side."""
    assert "LRN" in _ops(_run(_lrn_between(LANES + 3)))
    assert "LRN" in _ops(_run(_lrn_between(2 * LANES, size=2 * LANES + 3)))
