"""kiln::BlockedConv on the cpu target (conv chains in the NCHWc layout, compiler/passes/block_channels.py)
against the ref target, bit-identical at 1 and 2 threads.

Each model is a chain of two convs, both blocked (the pass told to rewrite every group, however small): the
first makes the second's input blocked, the second is the conv under test, its output made plain again at
the graph's end.
Sizes are odd on purpose: partial register tiles, image edges, several input channel runs and row blocks.
"""

import numpy as np
import pytest
from onnx import helper, numpy_helper

import compiler
import runtime
from compiler.codegen.llvm.kernels.blocked_conv import node_plan
from compiler.codegen.llvm.kernels.gemm_microkernel import vector_lanes
from compiler.driver import optimize
from compiler.passes.manager import PassSpec
from compiler.targets.base import get_target
from tests.codegen.kernel_harness import TOLERANCE, random

LANES = vector_lanes("float32")

# (input channels, output channels, input size, kernel, attributes of the conv under test)
CHAINS = [
    (LANES, 2 * LANES, (9, 11), (3, 3), {"pads": [1, 1, 1, 1]}),
    (2 * LANES, 4 * LANES, (7, 7), (3, 3), {"pads": [1, 1, 1, 1]}),  # a small image: one row block
    (LANES, 3 * LANES, (13, 10), (3, 3), {"strides": [2, 2], "pads": [1, 0, 2, 1]}),
    (LANES, LANES, (12, 12), (3, 2), {"dilations": [2, 3], "pads": [2, 1, 1, 3]}),
    (4 * LANES, 2 * LANES, (6, 9), (1, 1), {}),  # pointwise: every column one run
    (48 * LANES, LANES, (3, 5), (1, 1), {}),  # pointwise in several input channel runs (their weights past L1)
    (2 * LANES, 6 * LANES, (8, 8), (1, 1), {"strides": [2, 2]}),
    (LANES, LANES, (5, 23), (5, 5), {"pads": [2, 2, 2, 2]}),  # edges wider than a tile
    (20 * LANES, LANES, (4, 4), (3, 3), {"pads": [1, 1, 1, 1]}),  # several input channel runs
    (LANES, 2 * LANES, (40, 30), (3, 3), {"pads": [1, 1, 1, 1]}),  # several row blocks, the last partial
    (LANES, LANES, (30, 19), (5, 5), {"pads": [2, 2, 2, 2], "dilations": [2, 1]}),  # edge columns down row blocks
    (LANES, LANES, (20, 40), (3, 3), {"pads": [1, 1, 1, 1]}),  # wide rows: edge columns along each row
    (2 * LANES, 2 * LANES, (11, 21), (3, 3), {"pads": [1, 1, 1, 1], "group": 2 * LANES}),  # depthwise
    (LANES, LANES, (12, 13), (3, 3), {"strides": [2, 2], "pads": [0, 1, 1, 1], "group": LANES}),
    (LANES, LANES, (9, 10), (5, 5), {"dilations": [1, 2], "pads": [2, 4, 2, 4], "group": LANES}),
    # channels padded to whole blocks
    (LANES + 3, 2 * LANES + 5, (9, 10), (3, 3), {"pads": [1, 1, 1, 1]}),
    (2 * LANES + 5, LANES + 1, (6, 7), (1, 1), {}),
    (LANES + 5, LANES + 5, (8, 9), (3, 3), {"pads": [1, 1, 1, 1], "group": LANES + 5}),
]


def _chain(in_channels: int, out_channels: int, size, kernel, attrs: dict, stem: bool = False,
           residual: bool = False, batch: int = 1, dtype=np.float32):
    """x -> Conv 1x1 (or a stem: Conv 3x3 from 3 channels) -> Relu -> the conv under test [+ r] -> Relu -> y."""
    rng = np.random.default_rng(1)
    first_in = 3 if stem else in_channels
    first_kernel = (3, 3) if stem else (1, 1)
    constants = {
        "w0": (rng.standard_normal((in_channels, first_in, *first_kernel)) / np.sqrt(first_in * 9)).astype(dtype),
        "b0": rng.standard_normal(in_channels).astype(dtype),
        "w1": (rng.standard_normal((out_channels, in_channels // attrs.get("group", 1), *kernel))
               / np.sqrt(in_channels * np.prod(kernel)))
        .astype(dtype),
        "b1": rng.standard_normal(out_channels).astype(dtype)}
    first = {"pads": [1, 1, 1, 1]} if stem else {}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], kernel_shape=list(first_kernel), **first),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], kernel_shape=list(kernel), **attrs)]
    feeds = {"x": random((batch, first_in, *size), dtype)}
    last = "c1"
    if residual:  # (a conv keeping the size)
        feeds["r"] = random((batch, out_channels, *size), dtype, seed=2)
        nodes.append(helper.make_node("Add", ["c1", "r"], ["sum"]))
        last = "sum"
    nodes.append(helper.make_node("Relu", [last], ["y"]))
    return _model(nodes, feeds, constants), feeds


def _model(nodes, feeds: dict, constants: dict):
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                         for name, v in feeds.items()],
        [helper.make_value_info("y", helper.TypeProto())],
        initializer=[numpy_helper.from_array(v, name) for name, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _pipeline() -> list[PassSpec]:
    """The cpu pipeline, block-channels rewriting every group of convs."""
    return [PassSpec(spec.name, {"flops_per_conversion": 0}, spec.why) if spec.name == "block-channels" else spec
            for spec in get_target("cpu").pipeline({})]


def _blocked_convs(model, **options) -> int:
    return sum(node.op_type == "BlockedConv" for node in optimize(model, "cpu", pipeline=_pipeline(),
                                                                  **options).nodes())


def _assert_matches_ref(model, feeds: dict) -> None:
    """cpu results (bit-identical at 1 and 2 threads) match the ref target."""
    expected = runtime.load(compiler.compile(model, target="ref")).infer(feeds)["y"]
    artifact = compiler.compile(model, target="cpu", pipeline=_pipeline())
    single, double = (runtime.load(artifact, num_threads=threads).infer(feeds)["y"] for threads in (1, 2))
    np.testing.assert_array_equal(single, double)
    np.testing.assert_allclose(single, expected, **TOLERANCE)


@pytest.mark.parametrize("in_channels, out_channels, size, kernel, attrs", CHAINS)
def test_blocked_conv_matches_ref(in_channels, out_channels, size, kernel, attrs):
    model, feeds = _chain(in_channels, out_channels, size, kernel, attrs)
    assert _blocked_convs(model) == 2
    _assert_matches_ref(model, feeds)


def test_a_stem_reads_its_plain_image_and_a_residual_is_read_blocked():
    model, feeds = _chain(LANES, 2 * LANES, (10, 12), (3, 3), {"pads": [1, 1, 1, 1]}, stem=True, residual=True,
                          batch=2)
    graph = optimize(model, "cpu", pipeline=_pipeline())
    convs = [node for node in graph.nodes() if node.op_type == "BlockedConv"]
    assert len(convs) == 2
    assert [graph.input_values(conv)[0].node for conv in convs] == ["x", convs[0].name]  # the image, as it is
    assert len(graph.input_values(convs[1])) == 4  # its residual (blocked by a Reshape and a Transpose)
    _assert_matches_ref(model, feeds)


def test_a_padded_output_with_its_residual_leaves_the_blocked_layout_sliced_to_its_channels():
    model, feeds = _chain(LANES, LANES + 7, (7, 8), (3, 3), {"pads": [1, 1, 1, 1]}, stem=True, residual=True)
    graph = optimize(model, "cpu", pipeline=_pipeline())
    assert _blocked_convs(model) == 2 and sum(node.op_type == "Slice" for node in graph.nodes()) == 1
    _assert_matches_ref(model, feeds)


def test_a_stem_over_small_whole_images():
    """A batch of 8 small images: each item holds a whole image, its edge columns tiled down the rows."""
    model, feeds = _chain(LANES, LANES, (5, 6), (3, 3), {"pads": [1, 1, 1, 1]}, stem=True, batch=8)
    assert _blocked_convs(model) == 2
    _assert_matches_ref(model, feeds)


def test_a_plain_input_tile_sums_its_whole_window_and_stores_it_at_once():
    """A conv reading 3 plain channels (7x7 stride 2: 21 taps in two passes per tile) on rows wider than
    EDGE_ROWS_WIDTH writes each output's sum in one tile, edge columns too (BlockedPlan.fresh)."""
    model, feeds = _chain(3, 2 * LANES, (11, 80), (7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]})
    graph = optimize(model, "cpu", pipeline=_pipeline())
    (conv,) = [node for node in graph.nodes() if node.op_type == "BlockedConv"]
    assert node_plan(graph, conv).row_steps and node_plan(graph, conv).fresh
    _assert_matches_ref(model, feeds)


def test_a_pointwise_conv_skips_the_padded_channels_of_its_last_input_block():
    """2c + 5 input channels take 3 blocks (both convs of the chain read them): the tiles' last step multiplies
    the 5 real channels only."""
    model, feeds = _chain(2 * LANES + 5, 3 * LANES, (6, 7), (1, 1), {})
    graph = optimize(model, "cpu", pipeline=_pipeline())
    plans = [node_plan(graph, node) for node in graph.nodes() if node.op_type == "BlockedConv"]
    assert [(plan.padded_tail, plan.last_block_channels) for plan in plans] == [(True, 5), (True, 5)]
    _assert_matches_ref(model, feeds)


def test_float64_blocks_take_the_float64_vector_width():
    lanes = vector_lanes("float64")
    model, feeds = _chain(lanes, 3 * lanes, (6, 9), (3, 3), {"pads": [1, 1, 1, 1]}, dtype=np.float64)
    blocked = [node for node in optimize(model, "cpu", pipeline=_pipeline()).nodes() if node.op_type == "BlockedConv"]
    assert len(blocked) == 2 and blocked[1].outputs[0].shape == (1, 3, 6, 9, lanes)
    _assert_matches_ref(model, feeds)


def test_the_blocked_layout_can_be_switched_off_by_name():
    model, _ = _chain(LANES, 2 * LANES, (9, 11), (3, 3), {"pads": [1, 1, 1, 1]})
    assert _blocked_convs(model, disable=["block-channels"]) == 0
