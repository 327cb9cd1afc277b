"""Which axes a Reduce* node reduces: the same answer for every target's kernels."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node


def axes_input(graph: Graph, node: Node) -> np.ndarray | None:
    """The values of a Reduce* node's axes input (empty when absent); None when computed at run time."""
    values = graph.input_values(node)
    if len(values) < 2 or values[1] is None:
        return np.zeros(0, np.int64)
    constant = graph.constant_value(values[1])
    return None if constant is None else np.ravel(constant)


def reduce_axes(graph: Graph, node: Node) -> list[int]:
    """The reduced axes, sorted and non-negative (for a node whose axes input is a constant);
    no axes means all of them unless noop_with_empty_axes is set."""
    rank = len(graph.input_types(node)[0].shape)
    axes = [int(axis) for axis in axes_input(graph, node)]
    if not axes:
        return [] if node.attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({axis % rank for axis in axes})
