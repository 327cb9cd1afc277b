"""Merge, sink and cancel Transposes.

A Transpose of a Transpose is one Transpose with the composed permutation, and a Transpose
whose permutation is the identity only copies its input: it is dropped. Exporters often leave
pairs apart, with elementwise ops between them (NHWC<->NCHW around an activation): a Transpose
whose result only an elementwise op reads moves below it when that op's other operands are
constants (a constant is permuted the inverse way at compile time) or scalars. A Transpose
moves only when the chain of such ops below it ends in another Transpose, so the move always
ends in a merge: the pass never adds work. Elementwise ops compute each element alone, so
results stay bit-identical.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.elementwise import ACTIVATIONS, BINARY, UNARY_MATH
from compiler.passes.common import keeps_outputs_distinct
from compiler.passes.manager import PassContext, log, register_pass

_ELEMENTWISE = frozenset(UNARY_MATH + BINARY + ACTIVATIONS + ["Cast", "Identity", "Max", "Min", "Mean", "Sum"]) \
    - {"SwiGLU"}  # SwiGLU halves its last axis


def _perm(graph: Graph, node: Node) -> list[int] | None:
    """The permutation of a Transpose (reversed axes when the attribute is absent); None when the rank is unknown."""
    if "perm" in node.attrs:
        return list(node.attrs["perm"])
    input_type = graph.input_types(node)[0]
    if not isinstance(input_type, TensorType) or input_type.rank is None:
        return None
    return list(reversed(range(input_type.rank)))


def _is_transpose(node: Node) -> bool:
    return node.domain == "" and node.op_type == "Transpose"


def _sole_user(graph: Graph, value: Value) -> tuple[Node, int] | None:
    uses = graph.uses(value)
    if len(uses) != 1 or graph.is_graph_output(value):
        return None
    return graph.node(uses[0][0]), uses[0][1]


def _sinkable(graph: Graph, node: Node, index: int, rank: int) -> bool:
    """Whether `node` computes elementwise on its input `index` (of rank `rank`) with constant or scalar others."""
    if node.domain != "" or node.op_type not in _ELEMENTWISE or len(node.outputs) != 1:
        return False
    output_type = node.outputs[0]
    if not isinstance(output_type, TensorType) or output_type.rank != rank:
        return False
    for other, value in enumerate(graph.input_values(node)):
        if other == index or value is None:
            continue
        value_type = graph.type_of(value)
        scalar = isinstance(value_type, TensorType) and value_type.rank == 0
        constant = graph.constant_value(value)
        if not scalar and (constant is None or constant.ndim > rank):
            return False
    return True


def _sink_chain(graph: Graph, transpose: Node, perm: list[int]) -> tuple[list[tuple[Node, int]], Node] | None:
    """The elementwise ops (and which input each reads the chain at) from `transpose` down to the
    Transpose ending the chain; None when the chain does not end in one."""
    chain, value = [], Value(transpose.name)
    while (use := _sole_user(graph, value)) is not None:
        node, index = use
        if _is_transpose(node):
            return (chain, node) if chain else None
        if not _sinkable(graph, node, index, len(perm)):
            return None
        chain.append(use)
        value = Value(node.name)
    return None


def _permuted(shape: tuple, perm: list[int]) -> tuple:
    return tuple(shape[axis] for axis in perm)


def _sink(graph: Graph, transpose: Node, perm: list[int], chain: list[tuple[Node, int]], end: Node) -> None:
    """Feed the chain with the Transpose's input and fold `perm` into the Transpose `end`."""
    inverse = [perm.index(axis) for axis in range(len(perm))]
    value = graph.input_values(transpose)[0]
    for node, index in chain:
        for other, operand in enumerate(graph.input_values(node)):
            constant = None if other == index or operand is None else graph.constant_value(operand)
            if constant is not None and constant.ndim > 0:
                padded = constant.reshape((1,) * (len(perm) - constant.ndim) + constant.shape)
                name = f"{graph.value_name(operand)}.transposed"
                graph.set_input(node, other, graph.add_constant(np.ascontiguousarray(padded.transpose(inverse)), name))
        graph.set_input(node, index, value)
        output_type = node.outputs[0]
        node.outputs[0] = TensorType(output_type.dtype, _permuted(output_type.shape, inverse))
        value = Value(node.name)
    graph.set_input(end, 0, value)
    end.attrs["perm"] = [perm[axis] for axis in _perm(graph, end)]
    graph.remove_node(transpose.name)


def _merge(graph: Graph, transpose: Node, perm: list[int]) -> None:
    """`transpose` reads another Transpose: read that one's input, with the composed permutation."""
    inner = graph.node(graph.input_values(transpose)[0].node)
    graph.set_input(transpose, 0, graph.input_values(inner)[0])
    transpose.attrs["perm"] = [_perm(graph, inner)[axis] for axis in perm]
    value = Value(inner.name)
    if not graph.uses(value) and not graph.is_graph_output(value):
        graph.remove_node(inner.name)


def _drop(graph: Graph, transpose: Node) -> None:
    source = graph.input_values(transpose)[0]
    if keeps_outputs_distinct(graph, transpose, source):
        graph.replace_all_uses(Value(transpose.name), source)
        graph.remove_node(transpose.name)


@register_pass("cancel-transposes")
def cancel_transposes(graph: Graph, ctx: PassContext | None = None) -> Graph:
    for node in graph.topological_order():
        for subgraph in graph.subgraphs(node).values():
            cancel_transposes(subgraph, ctx)
        if not _is_transpose(node) or node.name not in graph or (perm := _perm(graph, node)) is None:
            continue
        source = graph.node(graph.input_values(node)[0].node)
        if _is_transpose(source) and _perm(graph, source) is not None:
            _merge(graph, node, perm)
            perm = _perm(graph, node)
        if perm == list(range(len(perm))):
            log.info("cancel-transposes: %s is the identity once merged; removed", node.name)
            _drop(graph, node)
        elif (found := _sink_chain(graph, node, perm)) is not None:
            log.info("cancel-transposes: %s sunk past its elementwise users", node.name)
            _sink(graph, node, perm, *found)
    return graph
