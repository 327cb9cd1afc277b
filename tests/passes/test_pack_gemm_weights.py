"""pack-gemm-weights: a Gemm/MatMul's constant B becomes the GEMM kernel's panels, laid out once."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.codegen.llvm.kernels.gemm_microkernel import choose_tile
from compiler.codegen.llvm.kernels.linear_algebra import _packed_fields, linear_problem
from compiler.ir.graph import KILN_DOMAIN, Graph, Value
from compiler.ops.fused_linear import packed_weights
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_verified

RNG = np.random.default_rng(0)
B = RNG.standard_normal((60, 96)).astype(np.float32)  # padded by whole vectors past k = 60
FEEDS = {"a": RNG.standard_normal((2, 9, 60)).astype(np.float32)}


def _matmul(weights: np.ndarray = B, a_shape=(2, 9, 60)) -> Graph:
    graph = Graph()
    a = graph.add_input("a", f32(*a_shape))
    b = graph.add_constant(weights, "b")
    graph.add_output("y", Value(graph.add_node("MatMul", [a, b], version=13, name="y").name))
    return graph


def test_a_matmul_reads_its_constant_weights_as_packed_panels():
    tile = choose_tile("float32", 18, 96)  # the batch folds into 18 rows
    expected = Graph()
    a = expected.add_input("a", f32(2, 9, 60))
    panels = expected.add_constant(packed_weights(B, tile.columns, tile.lanes), "y.packed_weights")
    attrs = {"epilogue": [], "activation": "", "fused_nodes": ["y"], "packed_weights": tile.columns,
             "weights_shape": [60, 96]}
    expected.add_output("y", Value(expected.add_node("FusedMatMul", [a, panels], attrs, domain=KILN_DOMAIN,
                                                     version=13, name="y").name))

    after = run_verified("pack-gemm-weights", _matmul())
    assert_same_graph(after, expected)
    assert_same_results(_matmul(), after, FEEDS)


def test_a_transposed_gemm_b_keeps_its_epilogue_and_packs_its_transpose():
    graph = Graph()
    a = graph.add_input("a", f32(7, 60))
    b = graph.add_constant(B.T.copy(), "b")
    gemm = graph.add_node("Gemm", [a, b], {"transB": 1, "alpha": 0.5}, version=13, name="gemm")
    graph.add_output("y", Value(graph.add_node("Relu", [Value(gemm.name)], version=14, name="y").name))
    fused = run_verified("fuse-epilogues", graph)
    after = run_verified("pack-gemm-weights", fused.copy())
    (node,) = _computing(after)
    assert node.attrs["weights_shape"] == [96, 60] and node.attrs["transB"] == 1
    assert node.attrs["activation"] == "Relu" and node.attrs["packed_weights"] > 0
    panels = after.constant_value(after.input_values(node)[1])
    np.testing.assert_array_equal(panels[0, :60, :8], B[:, :8])
    assert not panels[:, 60:].any()  # zeros past k
    assert_same_results(fused, after, {"a": FEEDS["a"][0, :7]})


def test_dot_products_runtime_operands_batched_and_small_weights_stay_as_they_are():
    """A fully connected layer at batch 1 (Gemm with transB) runs as dot products, which read B in place
    already; a MatMul's B at batch 1 is not transposed, so that one is still a GEMM and is packed."""
    dot = Graph()
    a = dot.add_input("a", f32(1, 60))
    dot.add_output("y", Value(dot.add_node("Gemm", [a, dot.add_constant(B.T.copy(), "b")], {"transB": 1},
                                           version=13, name="y").name))
    runtime_b = Graph()
    a, b = runtime_b.add_input("a", f32(9, 60)), runtime_b.add_input("b", f32(60, 96))
    runtime_b.add_output("y", Value(runtime_b.add_node("MatMul", [a, b], version=13, name="y").name))
    batched = _matmul(RNG.standard_normal((2, 60, 96)).astype(np.float32))
    small = _matmul(RNG.standard_normal((8, 4)).astype(np.float32), (9, 8))  # whole panels would be mostly zeros
    for graph, op_type in ((dot, "Gemm"), (runtime_b, "MatMul"), (batched, "MatMul"), (small, "MatMul"),
                           (_matmul(a_shape=(1, 60)), "FusedMatMul")):
        assert [node.op_type for node in _computing(run_verified("pack-gemm-weights", graph))] == [op_type]


def _computing(graph: Graph) -> list:
    return [node for node in graph.nodes() if not (node.is_input or node.is_constant)]


def test_panels_this_machine_cannot_read_are_refused_by_name():
    """Panels laid out for another vector width (fewer rows than k in this machine's whole vectors)."""
    graph = run_verified("pack-gemm-weights", _matmul())
    (node,) = _computing(graph)
    panels_shape = graph.type_of(graph.input_values(node)[1]).shape
    problem = linear_problem(graph, node, "MatMul")
    assert (problem.packed_b, problem.packed_depth) == (panels_shape[2], panels_shape[1])
    with pytest.raises(ValueError, match=r"node 'y.*' \(kiln::FusedMatMul\): its B is packed in panels of .* compile"):
        _packed_fields(node, problem, (panels_shape[0], 56, panels_shape[2]))
