"""Col2Im: sum sliding blocks (columns of kernel taps) back into an image.

The geometry is static: for each outer image coordinate and kernel tap, the block that puts
that tap there (or none) is a constant table, and along the innermost axis each tap covers a
range of blocks (PoolDim.tap_ranges), so the innermost loop adds one tap's contiguous run of
block values into the output row. A work item is one output row; each element accumulates its
taps in kernel order from 0, exactly as onnx.reference does, so results match it bit for bit.
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, element_type, for_range, kind_of, load, store
from compiler.codegen.llvm.kernels.linear_algebra import unravel
from compiler.codegen.llvm.kernels.lookup_tables import Table
from compiler.ops.pool_geometry import PoolDim
from compiler.codegen.llvm.kernels.reduction import dtype_problem
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

DTYPES = ("float32", "float64", "int32", "int64")


def _dims(graph: Graph, node: Node) -> list[PoolDim]:
    """Per spatial axis: image size, block count, kernel size, stride, dilation and pads."""
    image = node.outputs[0].shape[2:]
    block = graph.constant_value(graph.input_values(node)[2])
    if block is None:
        raise ValueError("Col2Im with block_shape (input 2) computed at run time is not compiled by the cpu target "
                         "(it sets the loop nest)")
    block = [int(k) for k in np.asarray(block).reshape(-1)]
    rank = len(image)
    strides = node.attrs.get("strides", [1] * rank)
    dilations = node.attrs.get("dilations", [1] * rank)
    pads = node.attrs.get("pads", [0] * 2 * rank)
    if not (len(block) == len(strides) == len(dilations) == rank and len(pads) == 2 * rank):
        raise ValueError(f"Col2Im needs block_shape, strides and dilations of {rank} values and pads of {2 * rank}")
    if min(block) < 1 or min(strides) < 1 or min(dilations) < 1:
        raise ValueError("Col2Im needs positive block_shape, strides and dilations")
    counts = [(size + pads[i] + pads[rank + i] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1
              for i, size in enumerate(image)]
    return [PoolDim(image[i], counts[i], block[i], strides[i], dilations[i], pads[i], pads[rank + i])
            for i in range(rank)]


def _check(graph: Graph, node: Node) -> str | None:
    data = graph.input_types(node)[0]
    problem = dtype_problem(node, data.dtype, DTYPES)
    if problem:
        return problem
    try:
        dims = _dims(graph, node)
    except ValueError as error:
        return str(error)
    taps, blocks = math.prod(d.kernel for d in dims), math.prod(d.size_out for d in dims)
    channels = node.outputs[0].shape[1]
    if len(data.shape) != 3 or data.shape[1] != channels * taps or data.shape[2] != blocks or \
            min(d.size_out for d in dims) < 1:
        return f"Col2Im input {data.shape} does not hold {channels} channels x {taps} kernel taps x {blocks} blocks"
    return None


def _outer_blocks(dim: PoolDim) -> np.ndarray:
    """(image coordinate, tap) -> the block putting that tap there, or -1."""
    table = np.full((dim.size_in, dim.kernel), -1, np.int64)
    for tap in range(dim.kernel):
        for block in range(dim.size_out):
            coordinate = block * dim.stride + tap * dim.dilation - dim.pad_begin
            if 0 <= coordinate < dim.size_in:
                table[coordinate, tap] = block
    return table


def _emit(ctx: KernelContext) -> None:
    b, data, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    if math.prod(y.shape) == 0:
        return
    *outer, last = _dims(ctx.graph, ctx.node)
    tables = [Table(ctx.module, _outer_blocks(dim), "kiln.col2im.blocks") for dim in outer]
    ranges = Table(ctx.module, np.array(last.tap_ranges(), np.int64), "kiln.col2im.ranges")
    dims = [*outer, last]
    tap_strides = [math.prod(d.kernel for d in dims[i + 1:]) for i in range(len(dims))]
    block_strides = [math.prod(d.size_out for d in dims[i + 1:]) for i in range(len(dims))]
    taps, blocks, width = math.prod(d.kernel for d in dims), math.prod(d.size_out for d in dims), last.size_in
    zero = ir.Constant(element_type(y.dtype), 0.0 if kind_of(y.dtype) == "float" else 0)
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        plane, *coordinates = unravel(b, row, (math.prod(y.shape[:2]), *(d.size_in for d in outer)))
        out_start = b.mul(row, const_i64(width))
        with for_range(b, 0, width, name="clear") as column:
            store(b, zero, y.ptr, y.dtype, b.add(out_start, column))
        with ExitStack() as nest:
            tap, block = const_i64(0), const_i64(0)
            for index, (dim, table, coordinate) in enumerate(zip(outer, tables, coordinates)):
                k = nest.enter_context(for_range(b, 0, dim.kernel, name=f"tap{index}"))
                source_block = table.load(b, b.add(b.mul(coordinate, const_i64(dim.kernel)), k))
                nest.enter_context(b.if_then(b.icmp_signed(">=", source_block, const_i64(0))))
                tap = b.add(tap, b.mul(k, const_i64(tap_strides[index])))
                block = b.add(block, b.mul(source_block, const_i64(block_strides[index])))
            k = nest.enter_context(for_range(b, 0, last.kernel, name="tap"))
            low, high = (ranges.load(b, b.add(b.mul(k, const_i64(2)), const_i64(field))) for field in range(2))
            source = b.add(b.mul(b.add(b.mul(plane, const_i64(taps)), b.add(tap, k)), const_i64(blocks)), block)
            shift = b.sub(b.mul(k, const_i64(last.dilation)), const_i64(last.pad_begin))
            with for_range(b, low, high, name="block") as column_block:
                target = b.add(out_start, b.add(shift, b.mul(column_block, const_i64(last.stride))))
                value = load(b, data.ptr, data.dtype, b.add(source, column_block))
                current = load(b, y.ptr, y.dtype, target)
                store(b, b.fadd(current, value) if kind_of(y.dtype) == "float" else b.add(current, value),
                      y.ptr, y.dtype, target)


def _rows(graph: Graph, node: Node) -> int:
    shape = node.outputs[0].shape
    return math.prod(shape[:-1]) if math.prod(shape) else 0


register_kernel(KernelSpec(("Col2Im",), _check, _rows, _emit))
