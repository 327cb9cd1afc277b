"""Evaluate, at compile time, every node whose inputs are all constants.

Whatever does not depend on the graph inputs (weight reshapes, shape arithmetic, casts of
initializers) is computed once here with the op's reference kernel instead of on every
run. Shape and Size of a tensor whose (sliced) shape is known fold without a kernel, and so
does CastLike of a constant (its second input gives only the dtype). An If with a constant
condition becomes its taken branch (inline_constant_branches.py).
Nodes are visited in topological order, so chains of foldable nodes fold in one pass; each
node's types are refreshed first, since inputs folded just before may now give it static
shapes (which lets a later Shape fold too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType, ValueType, dtype_of_array, numpy_dtype
from compiler.ops.registry import lookup
from compiler.passes.common import is_random, is_used, replace_with_constants
from compiler.passes.infer_types import refresh_types
from compiler.passes.inline_constant_branches import inline_taken_branch
from compiler.passes.manager import PassContext, register_pass


def _static_shape_data(node: Node, input_type: ValueType | None) -> np.ndarray | None:
    """The value of Shape or Size from the input type alone; None when the dims it needs are not all known."""
    if not isinstance(input_type, TensorType) or input_type.shape is None:
        return None
    if node.op_type == "Shape":
        dims = input_type.shape[node.attrs.get("start", 0):node.attrs.get("end")]
    else:
        dims = input_type.shape
    if not all(isinstance(d, int) for d in dims):
        return None
    return np.array(dims, dtype=np.int64) if node.op_type == "Shape" else np.array(math.prod(dims), dtype=np.int64)


def _agrees(recorded: ValueType | None, array: np.ndarray) -> bool:
    """False when the result contradicts the type the graph recorded (a kernel/inference mismatch)."""
    if recorded is None:
        return True
    if not isinstance(recorded, TensorType) or recorded.dtype != dtype_of_array(array):
        return False
    if recorded.shape is None:
        return True
    return len(recorded.shape) == array.ndim and all(
        not isinstance(d, int) or d == n for d, n in zip(recorded.shape, array.shape))


@register_pass("fold-constants")
@dataclass(frozen=True)
class FoldConstants:
    """`max_elements`: results with more elements than this stay computed at run time."""

    max_elements: int = 1 << 24

    def __call__(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        ctx = ctx or PassContext()
        inlined = False
        for node in graph.topological_order():
            subgraphs = graph.subgraphs(node)
            for subgraph in subgraphs.values():
                self(subgraph, ctx)
            if node.domain == "" and node.op_type == "If" and inline_taken_branch(graph, node):
                inlined = True
                continue
            if subgraphs or node.is_input or node.is_constant:
                continue
            self._refresh_unknown_types(graph, node, ctx)
            if is_random(graph, node) or self._too_large(node):
                continue
            used = [i for i in range(len(node.outputs)) if is_used(graph, Value(node.name, i))]
            results = self._evaluate(graph, node, ctx) if used else None
            if results is None:
                continue
            chosen = {i: results[i] for i in used}
            if all(isinstance(r, np.ndarray) and r.size <= self.max_elements and _agrees(node.outputs[i], r)
                   for i, r in chosen.items()):
                replace_with_constants(graph, node, chosen)
        return self(graph, ctx) if inlined else graph  # the inlined branches may fold further

    def _refresh_unknown_types(self, graph: Graph, node: Node, ctx: PassContext) -> None:
        """Inputs folded just before may pin down outputs the graph recorded as not static."""
        if all(isinstance(t, TensorType) and t.is_static for t in node.outputs):
            return
        try:
            refresh_types(graph, node)
        except ValueError as error:  # the op rejects its inputs: leave it for the verifier/run time to report
            ctx.log.warning("fold-constants: types of node %s (%s) not refreshed: %s", node.name, node.qualified_op, error)

    def _too_large(self, node: Node) -> bool:
        """Whether the recorded types already show a result over the limit (so it is never computed)."""
        return any(isinstance(t, TensorType) and t.is_static and math.prod(t.shape) > self.max_elements
                   for t in node.outputs)

    def _evaluate(self, graph: Graph, node: Node, ctx: PassContext) -> list | None:
        """The node's output values, or None when they are not known at compile time."""
        if node.domain == "" and node.op_type in ("Shape", "Size"):
            data = _static_shape_data(node, graph.input_types(node)[0])
            if data is not None:
                return [data]
        inputs = graph.input_values(node)
        values = [graph.constant_value(v) for v in inputs]
        if node.domain == "" and node.op_type == "CastLike" and isinstance(graph.input_types(node)[1], TensorType):
            values[1] = np.empty(0, numpy_dtype(graph.input_types(node)[1].dtype))  # only its dtype matters
        opdef = lookup(node.op_type, node.domain)
        if opdef is None or any(v is not None and value is None for v, value in zip(inputs, values)):
            return None
        kernel = opdef.kernel(node, graph.input_types(node), [v is not None for v in inputs])
        try:
            return kernel(values)
        except Exception as error:  # the op rejects these inputs: leave the failure to run time
            ctx.log.warning("fold-constants: node %s (%s) not folded: %s: %s",
                            node.name, node.qualified_op, type(error).__name__, error)
            return None
