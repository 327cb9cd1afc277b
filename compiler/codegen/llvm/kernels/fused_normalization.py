"""kiln::FusedSoftmax and kiln::FusedLayerNormalization on the cpu: one work item per row of the
normalized (trailing) axes. The prologue is computed once per element into the output row, reading
each operand once (normalization.py's own sweeps read X up to three times), then the Softmax or
LayerNormalization sweeps of normalization.py run over that row in place, while it is in cache.

The prologue's steps are emitted as the elementwise kernels compute them (fused_elementwise.emit_steps);
each operand moves through the row's coalesced dims with strides of 0 or 1, so the inner loop vectorizes.
"""

from __future__ import annotations

import math
from contextlib import ExitStack

from llvmlite import ir

from compiler.codegen.broadcast_dims import broadcast_strides, coalesce
from compiler.codegen.llvm.irhelpers import const_i64, for_range, load, store
from compiler.codegen.llvm.kernels.axis_loops import AxisSplit, Segment, emit_segments, split_axes
from compiler.codegen.llvm.kernels.fused_elementwise import emit_steps, steps_problem
from compiler.codegen.llvm.kernels.linear_algebra import unravel
from compiler.codegen.llvm.kernels.normalization import (layer_normalization_item, layer_normalization_problem,
                                                         softmax_item, softmax_problem)
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, TensorArg, register_kernel
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.fused_normalization import BASES, base_node, prologue_steps, prologue_types, split_inputs


def _normalized_axis(node: Node, rank: int) -> int:
    """The first normalized axis: the Softmax's (the last, for the fused op) or the LayerNormalization's."""
    return node.attrs.get("axis", -1) % rank


def _split(x_shape, node: Node) -> AxisSplit:
    return split_axes(x_shape, range(_normalized_axis(node, len(x_shape)), len(x_shape)))


def _check(graph: Graph, node: Node) -> str | None:
    parameters, operands = split_inputs(node, graph.input_types(node))
    types = prologue_types(node, operands)
    problem = steps_problem(prologue_steps(node), [t.dtype for t in types])
    if problem:
        return f"{node.qualified_op} prologue {problem}"
    x, base = types[-1], base_node(node)
    problem = (softmax_problem if base.op_type == "Softmax" else layer_normalization_problem)(base, [x, *parameters])
    if problem:
        return f"{node.qualified_op}: {problem}"
    axis = _normalized_axis(base, len(x.shape))
    if base.op_type == "Softmax" and axis != len(x.shape) - 1:
        return f"{node.qualified_op} over axis {axis} of {x.shape}: the cpu kernel normalizes the last axis only"
    if math.prod(x.shape[axis:]) < 2:
        return f"{node.qualified_op} of shape {x.shape} normalizes single elements: leave the {base.op_type} unfused"
    return None


class _Prologue:
    """Writes X, as the prologue computes it, into one row of the output."""

    def __init__(self, node: Node, operands: list[TensorArg], output: TensorArg):
        self.operands, self.output = operands, output
        self.steps = prologue_steps(node)
        self.dtypes = [t.dtype for t in prologue_types(node, [arg.type for arg in operands])]
        shape = output.shape
        axis = _normalized_axis(node, len(shape))
        self.leading = shape[:axis]
        aligned = [(1,) * (len(shape) - len(arg.shape)) + tuple(arg.shape) for arg in operands]
        self.row_strides = [broadcast_strides(dims)[:axis] for dims in aligned]
        self.dims, operand_dims = coalesce(shape[axis:], [dims[axis:] for dims in aligned])
        self.column_strides = [broadcast_strides(dims) for dims in operand_dims]

    def emit(self, builder: ir.IRBuilder, row: ir.Value, start: ir.Value) -> None:
        """X for row `row` (an index over the leading axes), stored from output offset `start` on."""
        coords = unravel(builder, row, self.leading)
        offsets = [_dot(builder, coords, strides, const_i64(0)) for strides in self.row_strides]
        with ExitStack() as loops:
            steps = [loops.enter_context(for_range(builder, 0, dim, name=f"x{index}"))
                     for index, dim in enumerate(self.dims)]
            offsets = [_dot(builder, steps, strides, base) for strides, base in zip(self.column_strides, offsets)]
            values = [load(builder, arg.ptr, arg.dtype, offset) for arg, offset in zip(self.operands, offsets)]
            x = emit_steps(builder, self.steps, self.dtypes, values)
            store(builder, x, self.output.ptr, self.output.dtype,
                  _dot(builder, steps, broadcast_strides(self.dims), start))


def _dot(builder: ir.IRBuilder, indices: list, strides, base: ir.Value) -> ir.Value:
    """base + sum of index * stride over the nonzero strides."""
    for index, stride in zip(indices, strides):
        if stride:
            base = builder.add(base, index if stride == 1 else builder.mul(index, const_i64(stride)))
    return base


def _work_items(graph: Graph, node: Node) -> int:
    return _split(node.outputs[0].shape, node).work_items


def _emit(ctx: KernelContext) -> None:
    b, node, y = ctx.builder, ctx.node, ctx.outputs[0]
    parameters, operands = split_inputs(node, ctx.inputs)
    split = _split(y.shape, node)
    if BASES[node.op_type][0] == "Softmax":
        sweeps = softmax_item(b, split, y, y, log_softmax=False)
    else:
        sweeps = layer_normalization_item(b, split, y, y, parameters[0], parameters[1], node.attrs.get("epsilon", 1e-5))
    prologue = _Prologue(node, operands, y)

    def item(segment: Segment) -> None:
        prologue.emit(b, segment.kept, segment.offset)
        sweeps(segment)

    emit_segments(b, split, ctx.begin, ctx.end, item)


register_kernel(KernelSpec(tuple(f"{KILN_DOMAIN}::{op_type}" for op_type in BASES), _check, _work_items, _emit,
                           batch_items=lambda graph, node, bound: _split(node.outputs[0].shape, node).batch_items(bound)))
