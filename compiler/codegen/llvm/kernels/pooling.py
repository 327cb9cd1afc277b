"""MaxPool (with its Indices), AveragePool and LpPool over 1 or more spatial dims, GlobalAveragePool
and GlobalMaxPool.

Window geometry is static, so it is worked out here into constant tables: for each output
position of each spatial dim, the first input coordinate its window reads, how many taps
(dilation apart) fall inside the input and that dim's factor of the average's divisor. A work
item is one output row (every position along the innermost spatial dim). The outer dims loop
over exactly their valid taps, without bounds tests; along the row, a vector of outputs is
combined in a register over all taps and stored once, each tap one load masked to the input
(strided windows keep every stride-th lane of a wider load). MaxPool with Indices instead walks,
for each tap of the innermost dim, the output positions that read it inside the input (a table).

Small planes at stride 1 (Inception's 3x3 pools on 28 x 28 to 7 x 7 maps, where a row fills part of a
vector) take the plane form: a work item is a whole (image, channel) plane, its flattened output
positions a few vectors. Rows as long as the input's make every tap of such a vector read one
contiguous run of the input, so each (vector, tap) is one load under a constant mask (the lanes
whose tap lies inside the input), unrolled at compile time with the divisors as constants.
"""

from __future__ import annotations

import itertools
import math
from contextlib import ExitStack, contextmanager
from dataclasses import astuple
from functools import reduce

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I32, const_i64, element_type, for_range, kind_of, load, store
from compiler.codegen.llvm.kernels.axis_loops import AxisSplit, split_axes
from compiler.codegen.llvm.kernels.gemm_microkernel import (load_vector, masked_load_where, masked_store, splat,
                                                            store_vector, vector_lanes)
from compiler.codegen.llvm.kernels.lookup_tables import Table
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic, select_max
from compiler.codegen.llvm.kernels.normalization import extra_outputs_used
from compiler.codegen.llvm.kernels.reduction import FLOATS, REDUCERS, dtype_problem, emit_reduction, lowest
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, batch_major, register_kernel
from compiler.ir.graph import Graph, Node
from compiler.ops.pool_geometry import PoolDim, pool_dims, pool_problem

POOL_DTYPES = {"MaxPool": (*FLOATS, "int8", "uint8"), "AveragePool": FLOATS, "LpPool": FLOATS}


def _check_pool(graph: Graph, node: Node) -> str | None:
    problem = dtype_problem(node, graph.input_types(node)[0].dtype, POOL_DTYPES[node.op_type])
    if problem:
        return problem
    return pool_problem(graph, node)


def constant_table(module: ir.Module, rows: list[tuple[int, ...]]) -> Table:
    """An int64 lookup table holding `rows` (tuples of one width) back to back."""
    return Table(module, np.array(rows, np.int64).reshape(-1), "kiln.pool.table")


def table_row(b: ir.IRBuilder, table: Table, index: ir.Value, width: int) -> list[ir.Value]:
    base = b.mul(index, const_i64(width))
    return [table.load(b, b.add(base, const_i64(field))) for field in range(width)]


def _initial(op_type: str, value_type: ir.Type, kind: str) -> ir.Constant:
    """What a window's result starts from: the identity of max, or a zero sum."""
    if op_type != "MaxPool":
        return float_constant(value_type, 0.0)
    return ir.Constant(value_type, 0) if kind == "unsigned" else lowest(value_type, kind)


def _combine(b: ir.IRBuilder, node: Node, current: ir.Value, value: ir.Value, kind: str) -> ir.Value:
    """Fold one input element into a window's running result."""
    if node.op_type == "MaxPool":
        return select_max(b, current, value, kind)
    if node.op_type == "LpPool":
        p = node.attrs.get("p", 2)
        if p == 2:
            value = b.fmul(value, value)
        else:
            value = intrinsic(b, "fabs", value)
            value = value if p == 1 else intrinsic(b, "pow", value, float_constant(value.type, p))
    return b.fadd(current, value)


def _keep_first_max(b: ir.IRBuilder, y, indices, target: ir.Value, value: ir.Value, index: ir.Value, kind: str):
    """MaxPool with Indices: the window's first largest element (taps run in row-major order) and its
    index, as ONNX Runtime and onnx.reference pick it; index -1 marks a window that took nothing yet."""
    current, current_index = load(b, y.ptr, y.dtype, target), load(b, indices.ptr, indices.dtype, target)
    if kind == "float":
        larger = b.fcmp_ordered(">", value, current)
    else:
        larger = (b.icmp_signed if kind == "signed" else b.icmp_unsigned)(">", value, current)
    take = b.or_(larger, b.icmp_signed("<", current_index, const_i64(0)))
    store(b, b.select(take, value, current), y.ptr, y.dtype, target)
    store(b, b.select(take, index, current_index), indices.ptr, indices.dtype, target)


def _index_strides(node: Node, size_in: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of MaxPool's Indices over the spatial dims: row major, or column major
    when storage_order=1; the (image, channel) plane comes first either way."""
    if node.attrs.get("storage_order", 0) == 1:
        return tuple(math.prod(size_in[:axis]) for axis in range(len(size_in)))
    return tuple(math.prod(size_in[axis + 1:]) for axis in range(len(size_in)))


def _emit_finish(ctx: KernelContext, out_start: ir.Value, outer_windows, window_tables) -> None:
    """After the taps: AveragePool divides by the window's divisor, LpPool takes the p-th root."""
    b, y, node = ctx.builder, ctx.outputs[0], ctx.node
    value_type, row_length = element_type(y.dtype), y.shape[-1]
    outer_divisor = reduce(b.mul, [window[2] for window in outer_windows], const_i64(1))
    p = node.attrs.get("p", 2)
    with for_range(b, 0, row_length, name="finish") as column:
        target = b.add(out_start, column)
        value = load(b, y.ptr, y.dtype, target)
        if node.op_type == "AveragePool":
            divisor = b.mul(outer_divisor, table_row(b, window_tables[-1], column, 3)[2])
            value = b.fdiv(value, b.sitofp(divisor, value_type))
        elif p == 2:
            value = intrinsic(b, "sqrt", value)
        elif p != 1:
            value = intrinsic(b, "pow", value, float_constant(value_type, 1.0 / p))
        store(b, value, y.ptr, y.dtype, target)


@contextmanager
def _outer_taps(b: ir.IRBuilder, outer_windows, outer_dims, offset: ir.Value, index: ir.Value,
                input_strides, index_strides):
    """Loops over the valid taps of the outer spatial dims (row-major order); yields the input offset and
    the Indices position of the tap's row."""
    with ExitStack() as loops:
        for axis, ((first, taps, _), dim) in enumerate(zip(outer_windows, outer_dims)):
            tap = loops.enter_context(for_range(b, 0, taps, name=f"tap{axis}"))
            coordinate = b.add(first, b.mul(tap, const_i64(dim.dilation)))
            offset = b.add(offset, b.mul(coordinate, const_i64(input_strides[axis])))
            index = b.add(index, b.mul(coordinate, const_i64(index_strides[axis])))
        yield offset, index


def _row_lanes(dtype: str, stride: int) -> int:
    """Outputs per vector of the row form: the host's vector, fewer when a stride spreads their inputs
    over more than 64 lanes."""
    return max(1, min(vector_lanes(dtype), 64 // stride))


def _emit_row_vectors(ctx: KernelContext, acc: ir.Value, last: PoolDim, outer_taps, out_start: ir.Value) -> None:
    """The row's outputs a vector at a time, each combined in a register over every tap (outer taps, then
    the innermost dim's in order, as the scalar form) and stored once. Tap kw of the outputs j0.. reads the
    input columns j0 * stride + kw * dilation - pad.. of one wide load, masked to the input (padding reads
    the initial value, which changes no result), and keeps every stride-th lane."""
    b, x, y, node = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node
    kind, value_type = kind_of(x.dtype), element_type(x.dtype)
    lanes, row_length = _row_lanes(x.dtype, last.stride), y.shape[-1]
    span = lanes * last.stride
    initial = _initial(node.op_type, value_type, kind)
    fill = splat(b, initial, span)
    lane_ids = ir.Constant(ir.VectorType(I32, span), list(range(span)))
    size_in = splat(b, ir.Constant(I32, last.size_in), span)
    with for_range(b, 0, row_length, lanes, name="cols") as j0:
        b.store(splat(b, initial, lanes), acc)
        with outer_taps() as (offset, _):
            with for_range(b, 0, last.kernel, name="tap") as tap:
                start = b.add(b.mul(j0, const_i64(last.stride)),
                              b.sub(b.mul(tap, const_i64(last.dilation)), const_i64(last.pad_begin)))
                columns = b.add(splat(b, b.trunc(start, I32), span), lane_ids)
                inside = b.icmp_unsigned("<", columns, size_in)  # negative columns wrap past the input
                wide = masked_load_where(b, x.ptr, x.dtype, b.add(offset, start), inside, fill)
                value = wide if last.stride == 1 else b.shuffle_vector(
                    wide, wide, ir.Constant(ir.VectorType(I32, lanes), [lane * last.stride for lane in range(lanes)]))
                b.store(_combine(b, node, b.load(acc), value, kind), acc)
        masked_store(b, b.load(acc), y.ptr, y.dtype, b.add(out_start, j0), b.sub(const_i64(row_length), j0))


def _emit_pool(ctx: KernelContext) -> None:
    """Per output row: for each valid tap of the outer dims, then each tap of the innermost dim, combine
    the input elements into the row's outputs (_emit_row_vectors; with Indices, element by element along
    the row, keeping the first largest); AveragePool and LpPool finish the row."""
    b, x, y, node = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node
    dims, kind = pool_dims(ctx.graph, node), kind_of(x.dtype)
    *outer_dims, last = dims
    indices = ctx.outputs[1] if node.op_type == "MaxPool" and extra_outputs_used(ctx.graph, node) else None
    index_strides = _index_strides(node, x.shape[2:])
    windows = [dim.windows(bool(node.attrs.get("count_include_pad", 0))) for dim in dims]
    window_tables = [constant_table(ctx.module, [astuple(w) for w in dim_windows]) for dim_windows in windows]
    row_length, input_strides = y.shape[-1], x.strides[2:]
    if indices is None:  # in the entry block, so it stays a register
        acc = b.alloca(ir.VectorType(element_type(x.dtype), _row_lanes(x.dtype, last.stride)))
    else:
        tap_table = constant_table(ctx.module, last.tap_ranges())
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        outer, remaining = [], row
        for size in reversed(y.shape[2:-1]):
            outer.insert(0, b.urem(remaining, const_i64(size)))
            remaining = b.udiv(remaining, const_i64(size))
        plane = b.mul(remaining, const_i64(math.prod(x.shape[2:])))
        out_start = b.mul(row, const_i64(row_length))
        outer_windows = [table_row(b, table, position, 3) for table, position in zip(window_tables, outer)]

        def outer_taps():
            return _outer_taps(b, outer_windows, outer_dims, plane, plane, input_strides, index_strides)

        if indices is None:
            _emit_row_vectors(ctx, acc, last, outer_taps, out_start)
        else:
            with for_range(b, 0, row_length, name="init") as column:
                store(b, _initial(node.op_type, element_type(x.dtype), kind), y.ptr, y.dtype, b.add(out_start, column))
                store(b, const_i64(-1), indices.ptr, indices.dtype, b.add(out_start, column))
            with outer_taps() as (offset, index):
                with for_range(b, 0, last.kernel, name="tap") as tap:
                    low, high = table_row(b, tap_table, tap, 2)
                    shift = b.sub(b.mul(tap, const_i64(last.dilation)), const_i64(last.pad_begin))
                    with for_range(b, low, high, name="col") as column:
                        coordinate = b.add(shift, b.mul(column, const_i64(last.stride)))
                        value = load(b, x.ptr, x.dtype, b.add(offset, coordinate))
                        position = b.add(index, b.mul(coordinate, const_i64(index_strides[-1])))
                        _keep_first_max(b, y, indices, b.add(out_start, column), value, position, kind)
        if node.op_type != "MaxPool":
            _emit_finish(ctx, out_start, outer_windows, window_tables)


PLANE_POSITIONS = 1024  # output positions of a plane the plane form takes at most
PLANE_LOADS = 512  # and (vector, tap) loads per plane at most (unrolled code)


def _plane_form(graph: Graph, node: Node) -> list[PoolDim] | None:
    """The pool's dims when it takes the plane form: MaxPool without Indices or AveragePool, stride 1,
    every spatial dim but the first as long as the input's, a small plane."""
    if node.op_type not in ("MaxPool", "AveragePool") or (node.op_type == "MaxPool" and
                                                          extra_outputs_used(graph, node)):
        return None
    dims = pool_dims(graph, node)
    positions = math.prod(dim.size_out for dim in dims)
    vectors = -(-positions // vector_lanes(graph.input_types(node)[0].dtype))
    if any(dim.stride != 1 for dim in dims) or any(dim.size_out != dim.size_in for dim in dims[1:]) or \
            positions > PLANE_POSITIONS or vectors * math.prod(dim.kernel for dim in dims) > PLANE_LOADS:
        return None
    return dims


def _emit_planes(ctx: KernelContext, dims: list[PoolDim]) -> None:
    b, x, y, node = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node
    kind, value_type, lanes = kind_of(x.dtype), element_type(x.dtype), vector_lanes(x.dtype)
    positions, plane_in = math.prod(dim.size_out for dim in dims), math.prod(dim.size_in for dim in dims)
    coordinates = np.unravel_index(np.arange(positions), [dim.size_out for dim in dims])
    in_strides = [math.prod(dim.size_in for dim in dims[axis + 1:]) for axis in range(len(dims))]
    taps = []  # (input offset from the output position, lanes inside the input) per tap, row-major
    for tap in itertools.product(*(range(dim.kernel) for dim in dims)):
        shifts = [t * dim.dilation - dim.pad_begin for t, dim in zip(tap, dims)]
        inside = np.logical_and.reduce([(c + s >= 0) & (c + s < dim.size_in)
                                        for c, s, dim in zip(coordinates, shifts, dims)])
        taps.append((sum(s * stride for s, stride in zip(shifts, in_strides)), inside))
    windows = [dim.windows(bool(node.attrs.get("count_include_pad", 0))) for dim in dims]
    divisors = np.prod([[windows[axis][c].divisor for c in coordinates[axis]] for axis in range(len(dims))], axis=0)
    initial = _initial(node.op_type, value_type, kind)
    mask_type = ir.VectorType(ir.IntType(1), lanes)
    with for_range(b, ctx.begin, ctx.end, name="plane") as plane:
        in_base, out_base = b.mul(plane, const_i64(plane_in)), b.mul(plane, const_i64(positions))
        for first in range(0, positions, lanes):
            acc = splat(b, initial, lanes)
            for offset, inside in taps:
                mask = [bool(v) for v in inside[first:first + lanes]] + [False] * max(0, first + lanes - positions)
                if any(mask):
                    value = masked_load_where(b, x.ptr, x.dtype, b.add(in_base, const_i64(first + offset)),
                                              ir.Constant(mask_type, mask), splat(b, initial, lanes))
                    acc = _combine(b, node, acc, value, kind)
            if node.op_type == "AveragePool":
                chunk = [float(d) for d in divisors[first:first + lanes]]
                acc = b.fdiv(acc, ir.Constant(acc.type, chunk + [1.0] * (lanes - len(chunk))))
            masked_store(b, acc, y.ptr, y.dtype, b.add(out_base, const_i64(first)),
                         const_i64(min(lanes, positions - first)))


CHANNEL_VECTOR_TAPS = 64  # window taps of the channel-vector form at most (unrolled code)


def _channel_vector_form(graph: Graph, node: Node) -> list[PoolDim] | None:
    """The dims of a MaxPool (no Indices) or AveragePool over the blocked layout [N, C / c, H, W, c]
    (block-channels' 2-D pools: a window of one lane along c); None otherwise. Every window holds an input
    element (pool_problem)."""
    if node.op_type not in ("MaxPool", "AveragePool") or extra_outputs_used(graph, node):
        return None
    dims = pool_dims(graph, node)
    if len(dims) != 3:
        return None
    height, width, lanes = dims
    if (lanes.kernel, lanes.stride, lanes.pad_begin, lanes.size_out) != (1, 1, 0, lanes.size_in) or \
            lanes.size_in > 64 or height.kernel * width.kernel > CHANNEL_VECTOR_TAPS:
        return None
    return dims


def _clamped_taps(dim: PoolDim, stride: int) -> list[tuple[int, ...]]:
    """Per output position, the input offset (coordinate x `stride`) each tap of its window reads: taps
    past the input read the window's last valid element again (in bounds; a maximum is unchanged by it,
    a sum leaves it out)."""
    return [tuple((window.first + min(tap, window.taps - 1) * dim.dilation) * stride for tap in range(dim.kernel))
            for window in dim.windows(False)]


class _WindowTables:
    """One spatial dim's tables: per output position, the tap offsets (_clamped_taps) and (first, taps,
    divisor)."""

    def __init__(self, module: ir.Module, dim: PoolDim, stride: int, count_padding: bool):
        self.dim = dim
        self.offsets = constant_table(module, _clamped_taps(dim, stride))
        self.windows = constant_table(module, [astuple(window) for window in dim.windows(count_padding)])

    def taps(self, b: ir.IRBuilder, position: ir.Value) -> list[tuple[ir.Value, ir.Value]]:
        """(input offset, whether the tap lies inside the input) for each tap at output `position`."""
        inside = table_row(b, self.windows, position, 3)[1]
        return [(offset, b.icmp_signed("<", const_i64(tap), inside))
                for tap, offset in enumerate(table_row(b, self.offsets, position, self.dim.kernel))]

    def divisor(self, b: ir.IRBuilder, position: ir.Value) -> ir.Value:
        return table_row(b, self.windows, position, 3)[2]


def _emit_channel_vectors(ctx: KernelContext, dims: list[PoolDim]) -> None:
    """A work item is an output row of a blocked pool: each output pixel's c channels are one vector,
    combined over the window's input vectors (whole, unmasked loads at offsets tabled per output row and
    column; an AveragePool's taps past the input add zero) and stored once. The row form loaded one masked
    vector per tap, its window worked out at run time: SqueezeNet's 3x3 stride-2 MaxPools take 0.72-0.86x
    their time this way, Inception-v2's 3x3 AveragePools 0.4-0.5x. A float maximum is one compare-and-select
    a tap (x86's vmaxps) with the taps' NaNs gathered in a mask, where llvm.maximum takes five or six
    instructions to order NaNs and signed zeros (SqueezeNet's MaxPools 0.4-0.6x their time on AMD Zen 4)."""
    b, x, y, node = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node
    height, width, lanes = dims
    kind, value_type, average = kind_of(x.dtype), element_type(x.dtype), node.op_type == "AveragePool"
    count_padding = bool(node.attrs.get("count_include_pad", 0))
    rows = _WindowTables(ctx.module, height, width.size_in * lanes.size_in, count_padding)
    columns = _WindowTables(ctx.module, width, lanes.size_in, count_padding)
    initial = splat(b, _initial(node.op_type, value_type, kind), lanes.size_in)
    plane_size = height.size_in * width.size_in * lanes.size_in
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        plane = b.mul(b.udiv(row, const_i64(height.size_out)), const_i64(plane_size))
        out_row = b.urem(row, const_i64(height.size_out))
        row_taps = [(b.add(plane, offset), inside) for offset, inside in rows.taps(b, out_row)]
        out_start = b.mul(row, const_i64(width.size_out * lanes.size_in))
        with for_range(b, 0, width.size_out, name="column") as column:
            acc, unordered = initial, None
            column_taps = columns.taps(b, column)
            for row_offset, row_inside in row_taps:
                for offset, column_inside in column_taps:
                    value = load_vector(b, x.ptr, x.dtype, b.add(row_offset, offset), lanes.size_in)
                    if average:
                        value = b.select(b.and_(row_inside, column_inside), value, ir.Constant(value.type, None))
                    if kind == "float" and not average:  # one vmaxps a tap; a NaN is remembered apart
                        acc = b.select(b.fcmp_ordered(">", acc, value), acc, value)
                        nan = b.fcmp_unordered("uno", value, value)
                        unordered = nan if unordered is None else b.or_(unordered, nan)
                    else:
                        acc = _combine(b, node, acc, value, kind)
            if unordered is not None:
                acc = b.select(unordered, ir.Constant(acc.type, [float("nan")] * lanes.size_in), acc)
            if average:
                divisor = b.mul(rows.divisor(b, out_row), columns.divisor(b, column))
                acc = b.fdiv(acc, splat(b, b.sitofp(divisor, value_type), lanes.size_in))
            store_vector(b, acc, y.ptr, y.dtype, b.add(out_start, b.mul(column, const_i64(lanes.size_in))))


def _emit_pool_kernel(ctx: KernelContext) -> None:
    planes = _plane_form(ctx.graph, ctx.node)
    blocked = None if planes else _channel_vector_form(ctx.graph, ctx.node)
    if planes is not None:
        _emit_planes(ctx, planes)
    elif blocked is not None:
        _emit_channel_vectors(ctx, blocked)
    else:
        _emit_pool(ctx)


def _pool_items(graph: Graph, node: Node) -> int:
    """(image, channel) planes in the plane form; output rows: of pixels in the channel-vector form, of
    elements in the row form."""
    shape = node.outputs[0].shape
    if _plane_form(graph, node):
        return math.prod(shape[:2])
    return math.prod(shape[:-2] if _channel_vector_form(graph, node) else shape[:-1])


register_kernel(KernelSpec(("MaxPool", "AveragePool", "LpPool"), _check_pool, _pool_items, _emit_pool_kernel,
                           batch_items=lambda graph, node, bound: batch_major(_pool_items(graph, node), bound)))


# ----- GlobalAveragePool / GlobalMaxPool: a mean / max reduction over the spatial dims ---------
GLOBAL_REDUCERS = {"GlobalAveragePool": REDUCERS["ReduceMean"], "GlobalMaxPool": REDUCERS["ReduceMax"]}


def _spatial_split(graph: Graph, node: Node) -> AxisSplit:
    shape = graph.input_types(node)[0].shape
    return split_axes(shape, range(2, len(shape)))


def _check_global(graph: Graph, node: Node) -> str | None:
    input_type = graph.input_types(node)[0]
    if len(input_type.shape) < 2:
        return f"{node.op_type} needs an input of rank >= 2"
    return dtype_problem(node, input_type.dtype, FLOATS)


def _emit_global(ctx: KernelContext) -> None:
    emit_reduction(ctx, GLOBAL_REDUCERS[ctx.node.op_type], _spatial_split(ctx.graph, ctx.node))


register_kernel(KernelSpec(tuple(GLOBAL_REDUCERS), _check_global,
                           lambda graph, node: _spatial_split(graph, node).work_items, _emit_global,
                           batch_items=lambda graph, node, bound: _spatial_split(graph, node).batch_items(bound)))
