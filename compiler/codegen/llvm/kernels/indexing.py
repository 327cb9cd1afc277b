"""Gather and GatherElements: strided box copies whose gathered axis is read from the indices at run time.

Negative indices count from the end of the axis. Out-of-range indices (an error in ONNX) are
clamped to the nearest valid index, so a bad index never reads outside the data tensor.
"""

from __future__ import annotations

import math

from compiler.codegen.llvm.kernels.strided_copy import Copy, Gathered, NotCompiled, dense_strides, register_copy_kernel
from compiler.ir.graph import Graph, Node

INDEX_DTYPES = ("int32", "int64")


def _operands(graph: Graph, node: Node) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(data shape, indices shape, axis) after checking the indices can be read."""
    data, indices = graph.input_types(node)
    axis = node.attrs.get("axis", 0)
    axis = axis + len(data.shape) if axis < 0 else axis
    if indices.dtype not in INDEX_DTYPES:
        raise NotCompiled(f"{node.op_type} with {indices.dtype} indices is not compiled by the cpu target")
    if data.shape[axis] == 0 and math.prod(indices.shape):
        raise NotCompiled(f"{node.op_type} from an empty axis has nothing to gather")
    return data.shape, indices.shape, axis


def _gather(graph: Graph, node: Node) -> list[Copy]:
    """The output as (outer, indices, inner): each index picks one inner block of the data."""
    shape, indices_shape, axis = _operands(graph, node)
    outer, inner, count = math.prod(shape[:axis]), math.prod(shape[axis + 1:]), math.prod(indices_shape)
    return [Copy(0, 0, (outer, count, inner), (shape[axis] * inner, 0, 1), (count * inner, inner, 1),
                 gathered=Gathered(1, shape[axis], inner, (0, 1, 0)))]


def _gather_elements(graph: Graph, node: Node) -> list[Copy]:
    """The output walks the indices' shape; the indexed axis moves by the index read at the same position."""
    shape, indices_shape, axis = _operands(graph, node)
    strides, positions = dense_strides(shape), dense_strides(indices_shape)
    sources = tuple(0 if a == axis else s for a, s in enumerate(strides))
    return [Copy(0, 0, indices_shape, sources, positions,
                 gathered=Gathered(1, shape[axis], strides[axis], positions))]


register_copy_kernel(("Gather",), _gather)
register_copy_kernel(("GatherElements",), _gather_elements)
