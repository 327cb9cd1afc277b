"""Lay out the constant B of a Gemm or MatMul at compile time as the cpu GEMM kernel reads it.

The blocked GEMM (compiler/codegen/llvm/kernels/linear_algebra.py) reads B through micro-panels:
column strips as wide as its register tile, contiguous over k. Left alone, every work item copies its
columns of B into such panels on every run, once more for each block of rows: that copy was 16 % of
the BERT encoder's time (its FFN-down MatMul 0.46 -> 0.36 ms without it). With B constant, the panels
are laid out once, here, as oneDNN and MLAS prepack their weights; the kernel reads them in place.

A Gemm or MatMul (or its fused form) qualifies when it is float and static, its B a 2-D constant, and
its GEMM the blocked form: a fully connected layer at batch 1 runs as dot products, which read each
weight once in place already. It becomes kiln::FusedGemm/FusedMatMul (an empty epilogue when it had
none) with `packed_weights` (compiler/ops/fused_linear.py) and the panels as its input 1. A matrix that
whole panels would pad by more than PADDING_SHARE (a few columns, a short depth) is small enough to copy
at run time, and stays as it is.
"""

from __future__ import annotations

from compiler.codegen.llvm.kernels.linear_algebra import (FLOATS, GemmProblem, gemm_plan, linear_check,
                                                          linear_problem)
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ir.types import TensorType
from compiler.ops.fused_linear import BASES, packed_weights
from compiler.passes.manager import PassContext, log, register_pass

FUSED = {base: fused for fused, (base, _) in BASES.items() if base != "Conv"}
PADDING_SHARE = 0.125  # of B's size at most, in zeros past its rows and columns: small matrices stay as they are


def _base_op(node: Node) -> str | None:
    """Gemm or MatMul for the nodes this pass may lay out, else None."""
    if node.domain == "" and node.op_type in FUSED:
        return node.op_type
    if node.domain == KILN_DOMAIN and node.op_type in FUSED.values() and not node.attrs.get("packed_weights", 0):
        return BASES[node.op_type][0]
    return None


def _packable_problem(graph: Graph, node: Node, base_op: str) -> GemmProblem | None:
    """The node's GEMM when it qualifies (see the module docstring), else None."""
    types = [t for t in graph.input_types(node) if t is not None] + list(node.outputs)
    if not all(isinstance(t, TensorType) and t.is_static and t.dtype in FLOATS for t in types):
        return None
    weights = graph.constant_value(graph.input_values(node)[1])
    if weights is None or weights.ndim != 2 or linear_check(graph, node):
        return None
    problem = linear_problem(graph, node, base_op)
    return None if problem.dot_form or problem.batch else problem


def _pack(graph: Graph, node: Node, base_op: str, problem: GemmProblem) -> bool:
    """Lay out the node's B, unless its padding would take more than PADDING_SHARE; whether it did."""
    tile = gemm_plan(problem).tile
    count = BASES[FUSED[base_op]][1]
    inputs = graph.input_values(node)
    inputs = (inputs[:count] + [None] * count)[:count] + inputs[count:]
    weights_value = inputs[1]
    weights = graph.constant_value(weights_value)
    matrix = weights.T if base_op == "Gemm" and node.attrs.get("transB", 0) else weights
    panels = packed_weights(matrix, tile.columns, tile.lanes)
    if panels.size > weights.size * (1 + PADDING_SHARE):
        return False
    inputs[1] = graph.add_constant(panels, f"{node.name}.packed_weights")
    attrs = {"epilogue": [], "activation": "", "fused_nodes": [node.name], **node.attrs,
             "packed_weights": tile.columns, "weights_shape": list(weights.shape)}
    graph.replace_node(node, FUSED[base_op], inputs, attrs, domain=KILN_DOMAIN, version=node.version)
    if not graph.uses(weights_value) and not graph.is_graph_output(weights_value):
        graph.remove_node(weights_value.node)
    return True


@register_pass("pack-gemm-weights")
def pack_gemm_weights(graph: Graph, ctx: PassContext | None = None) -> Graph:
    packed = 0
    for node in graph.topological_order():
        base_op = _base_op(node)
        problem = None if base_op is None else _packable_problem(graph, node, base_op)
        if problem is not None and _pack(graph, node, base_op, problem):
            packed += 1
    if packed:
        log.info("pack-gemm-weights: %d constant GEMM operands laid out as the kernel's panels", packed)
    return graph
