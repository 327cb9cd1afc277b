"""Slice and Concat on the GNA target: data movement without arithmetic (docs/gna-isa.md, COPY).

Slice only selects elements, so it changes a tensor's element map (`where`) and emits nothing.
Concat along an axis views every part as [outer, inner] rows (outer = the product of the dims
before the axis) and COPYs each part's rows into a slot of one output buffer. Every operand
address must be 64-byte aligned, so a part's rows are copied from the aligned element at or before
its first (the few elements before it come along and are ignored), and each slot is padded to 32
int16 elements (64 bytes). The result's element map skips the padding, which the layers after it
read through. Parts quantized at other scales than the result are first rescaled by a DIAGONAL; a
part whose rows no COPY can read (rows off the grid packed closer than their offset, a transposed
order) is gathered into rows by an AFFINE with a 0/1 selection matrix.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.codegen.gna.layers import Affine, Copy
from compiler.codegen.gna.lowering import Fusion, GnaLoweringError, Lowering, Tensor, pad8
from compiler.codegen.gna.quantize import activation_scale
from compiler.ir.graph import Graph, Node, Value

ALIGN = 32  # int16 elements in 64 bytes
MAX_GATHER = 1 << 22  # weights of a gathering AFFINE (8 MiB of int16)


def pad32(n: int) -> int:
    return -(-int(n) // ALIGN) * ALIGN


# ----- Slice ---------------------------------------------------------------------------------
def _slice_operands(graph: Graph, node: Node) -> list | None:
    """[starts, ends, axes, steps] as constants (attributes before opset 10); None when one is computed."""
    if "starts" in node.attrs:
        return [node.attrs["starts"], node.attrs["ends"], node.attrs.get("axes"), None]
    values = list(graph.input_values(node)[1:]) + [None] * 4
    operands = []
    for value in values[:4]:
        constant = None if value is None else graph.constant_value(value)
        if value is not None and constant is None:
            return None
        operands.append(None if constant is None else [int(v) for v in np.asarray(constant).ravel()])
    return operands


def check_slice(graph: Graph, node: Node) -> str | None:
    if _slice_operands(graph, node) is None:
        return "starts, ends, axes and steps must be constants: GNA layers address fixed elements"
    return None


def lower_slice(state: Lowering, node: Node) -> None:
    tensor = state.tensors[state.graph.input_values(node)[0]]
    starts, ends, axes, steps = _slice_operands(state.graph, node)
    rank = tensor.where.ndim
    index = [slice(None)] * rank
    for position, axis in enumerate(axes if axes is not None else range(len(starts))):
        step = steps[position] if steps is not None else 1
        index[axis % rank] = slice(starts[position], ends[position], step)
    state.tensors[Value(node.name, 0)] = Tensor(tensor.buffer, tensor.where[tuple(index)], tensor.scale, tensor.dtype)


# ----- Concat --------------------------------------------------------------------------------
def check_concat(graph: Graph, node: Node) -> str | None:
    if any(graph.constant_value(v) is not None for v in graph.input_values(node)):
        return "a constant part: GNA concatenation copies run-time tensors only; add the constant as a model input"
    return None


def _rows(view: np.ndarray, nbytes: int) -> tuple[int, int, int] | None:
    """(aligned base element, first column after it, row stride) of `view`, rows of a part's elements in a
    buffer of `nbytes`, when one COPY can read them; None otherwise."""
    count, width = view.shape
    base = int(view.min()) // ALIGN * ALIGN
    first = int(view[0, 0]) - base
    stride = int(view[1, 0] - view[0, 0]) if count > 1 else pad8(first + width)
    expected = base + first + np.arange(count)[:, None] * stride + np.arange(width)[None, :]
    columns = pad8(first + width)
    if not np.array_equal(view, expected) or stride < columns or (base + (count - 1) * stride + columns) * 2 > nbytes:
        return None
    return base, first, stride


def _gather(state: Lowering, node: Node, index: int, tensor: Tensor, views: list, fusion: Fusion) -> Tensor:
    """`tensor` rewritten as rows of `views`' width from element 0 (scaled to the concatenation's scale) by an
    AFFINE with a 0/1 selection matrix: for parts no COPY can read (rows off the 64-byte grid packed closer
    than their offset, or a transposed order)."""
    width = views[0].shape[1]
    count = sum(len(view) for view in views)
    padded, elements = pad32(width), tensor.buffer.nbytes // 2  # every row starts on the grid
    if count * padded * elements > MAX_GATHER:
        raise GnaLoweringError(f"node {node.name!r} (Concat): input {index} of shape {list(tensor.where.shape)} is "
                               "not laid out as rows a COPY can read, and too large to gather with an AFFINE; "
                               "put a layer that writes rows before it")
    matrix = np.zeros((count * padded, elements))
    rows = np.concatenate(views)
    matrix[(np.arange(count)[:, None] * padded + np.arange(width)[None, :]).ravel(), rows.ravel()] = 1.0
    name = f"{node.name}.gather{index}"
    quantized = state.weights_for(matrix, tensor.scale, node, fusion)
    table, dtype, out_scale = state.output_stage(node, fusion, tensor.scale, quantized.scale, name)
    out = state.buffer(name, count * padded)
    state.layers.append(Affine(name, tensor.buffer, out, quantized.values, np.zeros(len(matrix), np.int32),
                               quantized.multipliers, table, out_scale))
    where = np.arange(count)[:, None] * padded + np.arange(width)[None, :]
    return Tensor(out, where.reshape(tensor.where.shape), out_scale)


def lower_concat(state: Lowering, node: Node) -> None:
    """Along the last axis every part gets a column slot of the output rows (one COPY a part); along another
    axis the parts' rows are stacked (one COPY a part and outer index)."""
    graph = state.graph
    shape = tuple(node.outputs[0].shape)
    axis = node.attrs["axis"] % len(shape)
    outer, last = math.prod(shape[:axis]), shape[-1]
    value = Value(node.name, 0)
    fusion = Fusion(None, None, value, False)

    def views_of(tensor: Tensor) -> list:
        if axis == len(shape) - 1:
            return [tensor.where.reshape(outer, -1)]
        return list(tensor.where.reshape(outer, -1, last))

    def copyable(tensor: Tensor) -> bool:
        """One COPY a view can read it; stacked rows must start on the grid, so that the result is regular."""
        rows = [_rows(view, tensor.buffer.nbytes) for view in views_of(tensor)]
        return all(r is not None and (axis == len(shape) - 1 or r[1] == 0) for r in rows)

    tensors = []
    for index in range(len(graph.input_values(node))):
        tensor = state.tensor(node, index)
        if not copyable(tensor):
            tensor = _gather(state, node, index, tensor, views_of(tensor), fusion)
        tensors.append(tensor)
    scales = {t.scale for t in tensors}
    scale = scales.pop() if len(scales) == 1 else activation_scale(state.peak(value), state.out_scale)
    tensors = [t if t.scale == scale else state.diagonal(node, t, 1.0, 0.0, fusion, name=f"{node.name}.rescale{i}")
               for i, t in enumerate(tensors)]
    views = [views_of(t) for t in tensors]
    rows = [[_rows(view, t.buffer.nbytes) for view in part] for t, part in zip(tensors, views)]
    if axis == len(shape) - 1:
        widths = [pad32(r[0][1] + v[0].shape[1]) for r, v in zip(rows, views)]
        stride, offsets = sum(widths), [[sum(widths[:i])] for i in range(len(widths))]
    else:
        stride = pad32(last)
        heights = [t.where.size // (outer * last) for t in tensors]
        total = sum(heights)
        offsets = [[(o * total + sum(heights[:i])) * stride for o in range(outer)] for i in range(len(tensors))]
    out = state.buffer(node.name, (outer if axis == len(shape) - 1 else outer * total) * stride)
    pieces = [[] for _ in tensors]
    for index, tensor in enumerate(tensors):
        for number, (view, (base, first, in_stride), offset) in enumerate(zip(views[index], rows[index],
                                                                            offsets[index])):
            count, width = view.shape
            state.layers.append(Copy(f"{node.name}.part{index}" + (f".{number}" if len(views[index]) > 1 else ""),
                                     tensor.buffer.at(base * 2), out.at(offset * 2), rows=count,
                                     columns=pad8(first + width), in_stride=in_stride, out_stride=stride))
            pieces[index].append(offset + first + np.arange(count)[:, None] * stride + np.arange(width)[None, :])
    if axis == len(shape) - 1:
        where = np.concatenate([p[0] for p in pieces], axis=1)
    else:
        where = np.stack([np.concatenate([p[o].reshape(-1) for p in pieces]) for o in range(outer)])
    state.tensors[value] = Tensor(out, where.reshape(shape), scale)
