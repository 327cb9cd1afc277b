"""Numpy broadcasting seen as few dims: what every target's elementwise loop walks.

Adjacent output dims merge while every operand either spans both or broadcasts both, so a
kernel decodes few coordinates and each operand moves through each merged dim with a constant
stride (0 where it broadcasts).
"""

from __future__ import annotations

from typing import Sequence

from compiler.ir.graph import Graph, Node


def _aligned_shape(shape: Sequence[int], rank: int) -> list[int]:
    return [1] * (rank - len(shape)) + list(shape)


def coalesce(out_shape: Sequence[int], in_shapes: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """Merge adjacent dims with the same broadcast pattern; returns (out dims, per-input dims)."""
    rank = len(out_shape)
    shapes = [_aligned_shape(s, rank) for s in in_shapes]
    out_dims: list[int] = []
    in_dims: list[list[int]] = [[] for _ in shapes]
    for axis in range(rank):
        if out_shape[axis] == 1:
            continue
        pattern = [s[axis] == 1 for s in shapes]
        if out_dims and pattern == [d[-1] == 1 for d in in_dims]:
            out_dims[-1] *= out_shape[axis]
            for dims, shape in zip(in_dims, shapes):
                dims[-1] *= shape[axis]
        else:
            out_dims.append(out_shape[axis])
            for dims, shape in zip(in_dims, shapes):
                dims.append(shape[axis])
    if not out_dims:
        return [1], [[1] for _ in shapes]
    return out_dims, in_dims


def broadcast_strides(dims: Sequence[int]) -> list[int]:
    """Element strides of an input walking the output dims (0 where it broadcasts)."""
    strides, step = [], 1
    for dim in reversed(dims):
        strides.append(step if dim != 1 else 0)
        step *= dim
    return list(reversed(strides))


def same_shape_input(graph: Graph, node: Node) -> int | None:
    """The first input of the output's very type (dtype and shape): a broadcasting kernel reads
    its element i only to write output element i, so the output may take its storage."""
    for index, value_type in enumerate(graph.input_types(node)):
        if value_type is not None and value_type == node.outputs[0]:
            return index
    return None
