"""How QuantizeLinear/DequantizeLinear parameters line up with x, for every target.

A scale or zero point that is per tensor, per axis or blocked is viewed as a tensor that
broadcasts against x (a blocked axis of size D is viewed as (D / block_size, block_size)), so
kernels run them as broadcasting elementwise ops and the parameters may be computed at run time.
"""

from __future__ import annotations

import math

from compiler.ir.graph import Graph, Node


def quantize_layout(graph: Graph, node: Node) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """(view of x and the output, views of the scale and zero point) that broadcast together."""
    types = graph.input_types(node)
    shape = types[0].shape
    params = [t.shape for t in types[1:3] if t is not None]
    if math.prod(params[0]) == 1:  # per tensor (a single value, whatever the attributes)
        return shape, [()] * len(params)
    axis = node.attrs.get("axis", 1) % len(shape)
    block = node.attrs.get("block_size", 0)
    if not block:
        return shape, [(1,) * axis + (shape[axis],) + (1,) * (len(shape) - axis - 1)] * len(params)
    blocks = math.ceil(shape[axis] / block)
    size = min(block, shape[axis])
    view = shape[:axis] + (blocks, size) + shape[axis + 1:]
    return view, [shape[:axis] + (blocks, 1) + shape[axis + 1:]] * len(params)


def layout_problem(graph: Graph, node: Node) -> str | None:
    """Why the scale and zero point of `node` do not fit x, or None."""
    types = graph.input_types(node)
    shape, param = types[0].shape, types[1].shape
    axis, block = node.attrs.get("axis", 1), node.attrs.get("block_size", 0)
    zero_point = types[2] if len(types) > 2 else None
    if zero_point is not None and zero_point.shape != param and math.prod(zero_point.shape) * math.prod(param) != 1:
        return f"{node.op_type} zero point shape {list(zero_point.shape)} differs from the scale's {list(param)}"
    if math.prod(param) == 1:
        return None
    if not -len(shape) <= axis < len(shape):
        return f"{node.op_type} axis {axis} is out of range for rank {len(shape)}"
    axis %= len(shape)
    if block:
        expected = shape[:axis] + (math.ceil(shape[axis] / block),) + shape[axis + 1:]
        if param != expected:
            return f"{node.op_type} with block_size {block} needs scale shape {list(expected)}, got {list(param)}"
        if shape[axis] % block and shape[axis] > block:
            return (f"{node.op_type} with block_size {block} not dividing axis size {shape[axis]} (a partial "
                    "last block) is not compiled")
    elif param != (shape[axis],):
        return f"{node.op_type} needs a single scale or {shape[axis]} along axis {axis}, got shape {list(param)}"
    return None
