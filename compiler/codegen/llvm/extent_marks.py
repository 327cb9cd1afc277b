"""Where cpu kernels stop at the first dynamic dim's size (compiler/dynamic_extent.py) instead of
computing its padding, told through node attributes (kernels/registry.py: BATCH_ROWS, EXTENT_*), and
the masks that makes redundant.

Only values holding the first dim whole and unchanged by windows (a sequence length) are marked: that
dim's size is ctx.extent in every kernel. Everything else is computed at the bounds, which the masks
keep exact.
"""

from __future__ import annotations

import math
from typing import Mapping

from compiler.codegen.llvm.extent_launch import LINEAR
from compiler.codegen.llvm.kernels.linear_algebra import linear_problem
from compiler.codegen.llvm.kernels import depthwise_conv
from compiler.codegen.llvm.kernels.conv_geometry import conv_geometry
from compiler.codegen.llvm.kernels.convolution import direct_form_plan
from compiler.codegen.llvm.kernels.linear_algebra import DOT_COLUMNS, gemm_plan
from compiler.codegen.llvm.kernels.registry import (BATCH_ROWS, EXTENT_COLUMNS, EXTENT_COPY, EXTENT_DEPTH,
                                                     EXTENT_IMAGE, EXTENT_REDUCED, EXTENT_ROWS)
from compiler.extent_rules import MASK_OP
from compiler.dynamic_extent import first_axes
from compiler.extent_types import FIRST, Extent
from compiler.ir.graph import Graph, Node, Value


def mark_extent_kernels(graph: Graph, axes: Mapping[Value, frozenset], bound: int) -> None:
    """Tell kernels where they run over the first dynamic dim (of bound `bound`). MatMul/Gemm: in their rows,
    the rows of one run of positions (BATCH_ROWS), so row blocks stop at each run's end (extent_launch.py),
    and those of the positions below the size (EXTENT_ROWS), which a row block computes alone; in their
    columns or their sum (a MatMul's A holding it last), that the GEMM stops them there. Softmax over it
    stops there too (EXTENT_REDUCED), and Transpose and Gather copies along it (EXTENT_COPY). 2-D
    convolutions over a dynamic image size skip the work items past its valid rows and columns
    (EXTENT_IMAGE: the height's and width's extents; conv_blocks)."""
    for node in graph.nodes():
        if node.is_input or node.is_constant:
            continue
        shape = node.outputs[0].shape
        held = first_axes(axes, Value(node.name), shape, bound)
        if node.op_type in ("Transpose", "Gather") and held:
            node.attrs[EXTENT_COPY] = [math.prod(shape[held[0] + 1:]), bound]
        if node.op_type in ("Softmax", "LogSoftmax") and (node.version or 13) >= 13:
            axis = int(node.attrs.get("axis", -1)) % len(shape)
            if axis in first_axes(axes, graph.input_values(node)[0], shape, bound):
                node.attrs[EXTENT_REDUCED] = 1
        if node.op_type in LINEAR:
            _mark_linear(graph, node, axes, bound)
        if node.op_type in ("Conv", "FusedConv") and len(shape) == 4:
            sides = {held.axis: held.extent.to_json() for held in axes.get(Value(node.name), ())
                     if held.axis >= 2 and held.inner == 1}
            if sides:
                node.attrs[EXTENT_IMAGE] = [sides.get(2), sides.get(3)]


def _mark_linear(graph: Graph, node: Node, axes: Mapping[Value, frozenset], bound: int) -> None:
    shape = node.outputs[0].shape
    held = first_axes(axes, Value(node.name), shape, bound)
    rows = [axis for axis in first_axes(axes, Value(node.name), shape, bound, whole=False) if axis <= len(shape) - 2]
    if rows:
        per_position = math.prod(shape[rows[0] + 1:-1])
        period = bound * per_position
        node.attrs[BATCH_ROWS] = math.gcd(node.attrs.get(BATCH_ROWS, period), period)
        node.attrs[EXTENT_ROWS] = [period, per_position]
    if len(shape) - 1 in held:
        node.attrs[EXTENT_COLUMNS] = 1
    a_value = graph.input_values(node)[0]
    a_shape = graph.type_of(a_value).shape
    if node.op_type in ("MatMul", "FusedMatMul") and len(a_shape) >= 2 and \
            len(a_shape) - 1 in first_axes(axes, a_value, a_shape, bound):
        node.attrs[EXTENT_DEPTH] = 1


def drop_honored_masks(graph: Graph) -> None:
    """Remove the MaskTails whose every reader stops at the size itself (after mark_extent_kernels): a
    Softmax over the masked axis, a blocked GEMM whose masked columns or sum it cuts short. Their fill would
    be written for nobody."""
    for node in list(graph.nodes()):
        if node.op_type != MASK_OP or node.attrs["inner"] != 1 or Extent.from_json(node.attrs["extent"]) != FIRST:
            continue
        if all(_stops_at_extent(graph, graph.node(reader), position, node) for reader, position in
               graph.uses(Value(node.name))) and not graph.is_graph_output(Value(node.name)):
            graph.replace_all_uses(Value(node.name), graph.input_values(node)[0])
            graph.remove_node(node.name)


def _stops_at_extent(graph: Graph, reader: Node, position: int, mask: Node) -> bool:
    axis, fill = mask.attrs["axis"], mask.attrs["fill"]
    rank = len(mask.outputs[0].shape)
    if reader.op_type in ("Softmax", "LogSoftmax"):
        return bool(reader.attrs.get(EXTENT_REDUCED)) and fill == -math.inf and \
            int(reader.attrs.get("axis", -1)) % rank == axis
    if reader.op_type not in ("MatMul", "FusedMatMul") or position > 1 or fill != 0.0 or rank < 2:
        return False
    if linear_problem(graph, reader, "MatMul").dot_form:
        return False
    depth_axis = rank - 1 if position == 0 else rank - 2
    return (axis == depth_axis and bool(reader.attrs.get(EXTENT_DEPTH))) or \
        (position == 1 and axis == rank - 1 and bool(reader.attrs.get(EXTENT_COLUMNS)))


def conv_blocks(graph: Graph, node: Node) -> tuple[tuple[int, ...], list[tuple[int, int, int, int]]]:
    """How a 2-D convolution's work items cover its output: (item dims, cuts), a cut (digit of the item
    index, output units per block along it, units per output position, 0 for the height or 1 for the
    width). The direct and channel-vector forms count blocks of rows and tiles of columns; the depthwise
    form blocks of rows; the pointwise form, a GEMM over the flattened positions, blocks of positions
    (the output width of them make a row)."""
    x_type, w_type = graph.input_types(node)[:2]
    geometry = conv_geometry(node, x_type, w_type)
    if depthwise_conv.specialised(geometry):
        plan = depthwise_conv.depthwise_plan(geometry)
        return plan.item_dims, [(2, plan.rows, 1, 0)]
    if geometry.pointwise and not node.attrs.get("transposed_weights", 0):
        problem = geometry.gemm(bias=False)
        if problem.dot_form:
            dims = (*problem.batch, problem.m, math.ceil(problem.n / DOT_COLUMNS))
            return dims, [(len(dims) - 1, DOT_COLUMNS, geometry.out_size[-1], 0)]
        plan = gemm_plan(problem)
        dims = (*problem.batch, math.ceil(problem.m / plan.rows), math.ceil(problem.n / plan.columns))
        return dims, [(len(dims) - 1, plan.columns, geometry.out_size[-1], 0)]
    plan = direct_form_plan(node, geometry, w_type)
    digits = len(plan.item_dims)
    return plan.item_dims, [(digits - 2, plan.rows, 1, 0), (digits - 1, geometry.columns, 1, 1)]
