"""sink-dequantize: DequantizeLinear moves below ops that commute with it; Q(DQ(x)) with equal parameters goes."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from tests.passes.conftest import assert_same_graph, assert_same_results, run_verified

FEEDS = {"x": np.random.default_rng(0).integers(0, 256, (1, 4, 6, 6)).astype(np.uint8)}


def _parameters(graph: Graph, scale: float, zero_point: int) -> list[Value]:
    return [graph.add_constant(np.float32(scale)), graph.add_constant(np.uint8(zero_point))]


def _before(op_type: str, inputs: list, attrs: dict, out_scale: float) -> Graph:
    """x (uint8) -> DQ(0.1, 3) -> op -> Q(out_scale, 3) -> y."""
    graph = Graph()
    x = graph.add_input("x", TensorType("uint8", (1, 4, 6, 6)))
    dequantized = graph.add_node("DequantizeLinear", [x, *_parameters(graph, 0.1, 3)], version=21, name="dq")
    op = graph.add_node(op_type, [Value(dequantized.name), *[graph.add_constant(a) for a in inputs]], attrs,
                        version=21, name="op")
    quantized = graph.add_node("QuantizeLinear", [Value(op.name), *_parameters(graph, out_scale, 3)], version=21,
                               name="q")
    graph.add_output("y", Value(quantized.name))
    return graph


def test_transpose_runs_on_uint8_and_the_pair_cancels():
    before = _before("Transpose", [], {"perm": [0, 2, 3, 1]}, 0.1)
    after = run_verified("eliminate-dead-code", run_verified("sink-dequantize", before.copy()))
    expected = Graph()
    x = expected.add_input("x", TensorType("uint8", (1, 4, 6, 6)))
    expected.add_output("y", Value(expected.add_node("Transpose", [x], {"perm": [0, 2, 3, 1]}, version=21,
                                                     name="op.q").name))
    assert_same_graph(after, expected)
    assert_same_results(before, after, FEEDS)


def test_other_parameters_keep_the_quantize():
    before = _before("Reshape", [np.array([1, 4, 36])], {}, 0.2)
    after = run_verified("sink-dequantize", before.copy())
    ops = [node.op_type for node in after.topological_order() if not (node.is_input or node.is_constant)]
    assert ops == ["Reshape", "DequantizeLinear", "QuantizeLinear"]
    reshape = next(node for node in after.nodes() if node.op_type == "Reshape")
    assert reshape.outputs[0].dtype == "uint8"
    assert_same_results(before, after, FEEDS)


def test_max_pool_moves_below_the_dequantize():
    before = _before("MaxPool", [], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}, 0.1)
    after = run_verified("sink-dequantize", before.copy())
    ops = [node.op_type for node in after.topological_order() if not (node.is_input or node.is_constant)]
    assert ops == ["MaxPool"]
    assert_same_results(before, after, FEEDS)
