"""kiln::FusedConv / FusedGemm / FusedMatMul: the Conv, Gemm and MatMul kernels with their epilogue
applied to each finished output in the store pass, while it is still in a register.

The epilogue's steps are emitted exactly as the elementwise kernels compute them
(elementwise.apply_op), so a fused node computes what the unfused nodes did from the base op's
result. Its other operands broadcast to the output: each is read at an offset worked out from
the output row (hoisted out of the store loop) plus the column times a stride of 0 or 1 when
its trailing dims are all broadcast or all dense, else from the column's own coordinates.
"""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, load
from compiler.codegen.llvm.kernels import convolution, linear_algebra
from compiler.codegen.llvm.kernels.elementwise import apply_op
from compiler.codegen.llvm.kernels.fused_elementwise import step_problem
from compiler.codegen.llvm.kernels.linear_algebra import unravel
from compiler.codegen.llvm.kernels.registry import BatchItems, KernelContext, KernelSpec, TensorArg, register_kernel
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.fused_linear import BASES, epilogue_steps, epilogue_types


class Epilogue:
    """linear_algebra.Epilogue for one fused node: (builder, value, row start, column) -> stored value,
    where the output element is row start + column and the column spans the last `columns` dims."""

    def __init__(self, node: Node, output: TensorArg, extras: list[TensorArg], columns: int):
        self.output, self.extras, self.columns = output, extras, columns
        self.steps = epilogue_steps(node)
        self.dtypes = [t.dtype for t in epilogue_types(node, output.type, [arg.type for arg in extras])]
        shape = output.shape
        self.strides = []
        for arg in extras:  # element strides of each operand over the output's dims (0 where it broadcasts)
            aligned = (1,) * (len(shape) - len(arg.shape)) + tuple(arg.shape)
            self.strides.append(tuple(0 if dim == 1 else step for dim, step in zip(aligned, dense_strides(aligned))))

    def __call__(self, builder: ir.IRBuilder, value: ir.Value, row_start: ir.Value, column: ir.Value) -> ir.Value:
        shape, split = self.output.shape, len(self.output.shape) - self.columns
        row = unravel(builder, builder.udiv(row_start, const_i64(math.prod(shape[split:]) or 1)), shape[:split])
        values = [value]
        for arg, strides in zip(self.extras, self.strides):
            offset = self._offset(builder, row, strides[:split], const_i64(0))
            index = self._column_offset(builder, column, strides[split:], offset)
            values.append(load(builder, arg.ptr, arg.dtype, index))
        for step in self.steps:
            operands = [None if ref is None else values[ref] for ref in step.operands]
            stored = [None if ref is None else self.dtypes[ref] for ref in step.operands]
            values.append(apply_op(builder, step.node, operands, stored, self.dtypes[len(values)]))
        return values[-1]

    @staticmethod
    def _offset(builder, coords, strides, base):
        for coord, stride in zip(coords, strides):
            if stride:
                base = builder.add(base, builder.mul(coord, const_i64(stride)))
        return base

    def _column_offset(self, builder, column, strides, base):
        trailing = self.output.shape[len(self.output.shape) - self.columns:]
        if not any(strides):
            return base
        if tuple(strides) == dense_strides(trailing):
            return builder.add(base, column)
        return self._offset(builder, unravel(builder, column, trailing), strides, base)


def _check(graph: Graph, node: Node) -> str | None:
    base_check = convolution.conv_check if node.op_type == "FusedConv" else linear_algebra.linear_check
    problem = base_check(graph, node)
    if problem:
        return problem
    extra_types = graph.input_types(node)[BASES[node.op_type][1]:]
    types = epilogue_types(node, node.outputs[0], extra_types)
    for index, step in enumerate(epilogue_steps(node)):
        dtypes = [None if ref is None else types[ref].dtype for ref in step.operands]
        problem = step_problem(step.node, dtypes, types[1 + len(extra_types) + index].dtype)
        if problem:
            return f"{node.qualified_op} epilogue step {index}: {problem}"
    return None


def _work_items(graph: Graph, node: Node) -> int:
    if node.op_type == "FusedConv":
        return convolution.conv_work_items(graph, node)
    return linear_algebra.gemm_work_items(graph, node, BASES[node.op_type][0])


def _batch_items(graph: Graph, node: Node, bound: int) -> BatchItems | None:
    if node.op_type == "FusedConv":
        return convolution.conv_batch_items(graph, node, bound)
    return linear_algebra.linear_batch_items(graph, node, BASES[node.op_type][0], bound)


def _emit(ctx: KernelContext) -> None:
    count = BASES[ctx.node.op_type][1]
    output = ctx.outputs[0]
    extras = ctx.inputs[count:]
    if ctx.node.op_type == "FusedConv":
        convolution.emit_conv(ctx, lambda columns: Epilogue(ctx.node, output, extras, columns))
    else:
        linear_algebra.emit_linear(ctx, BASES[ctx.node.op_type][0], Epilogue(ctx.node, output, extras, 1))


register_kernel(KernelSpec(tuple(f"{KILN_DOMAIN}::{op_type}" for op_type in BASES), _check, _work_items, _emit,
                           batch_items=_batch_items))
