"""Launches in a dynamic-extent artifact (compiler/dynamic_extent.py): kernels whose work items walk
the dim in rows run only the items of positions < s.

A kernel qualifies when its items walk its output row-major over the axes up to the dim's axis (each
family's condition is in `_walks_rows`): asked for those leading positions as the entries of a batch,
KernelSpec.batch_items gives (A, B, C), so the items form `groups` runs of P = bound * A / B * C, one
per index of the axes before the dim, and the first ceil(s * A / B) * C of each run compute positions
< s. The launch covers groups x that many items; a trampoline task maps each launched range onto the
runs and calls the kernel on each piece. The other items compute padding, which nothing valid reads
(masks fill it before anything mixes it in), so skipping them changes no valid output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I64, PTR, const_i64, for_range
from compiler.codegen.llvm.kernels.registry import kernel_for
from compiler.dynamic_batch import ELEMENTWISE, ELEMENTWISE_KILN, PER_IMAGE
from compiler.extent_rules import MASK_OP
from compiler.extent_types import FIRST, Extent
from compiler.ir.graph import Graph, Node, Value
from compiler.ops.fused_linear import BASES as FUSED_LINEAR

LINEAR = ("MatMul", "Gemm", "FusedMatMul", "FusedGemm")
NORMALIZATIONS = ("Softmax", "LogSoftmax", "FusedSoftmax", "LayerNormalization", "FusedLayerNormalization")


def _walks_rows(node: Node, axis: int) -> bool:
    """Whether the node's items walk its output row-major over axes 0..axis (so batch_items, asked for
    those positions as entries, describes them)."""
    op_type, rank = node.op_type, len(node.outputs[0].shape)
    if op_type == MASK_OP:
        return axis < node.attrs["axis"]
    if op_type in ELEMENTWISE or op_type in ELEMENTWISE_KILN:
        return True
    if op_type in LINEAR:
        return axis <= rank - 2
    if op_type in NORMALIZATIONS:
        return axis < int(node.attrs.get("axis", -1)) % rank and (node.version or 13) >= 13
    return axis == 0 and (op_type in PER_IMAGE or op_type in FUSED_LINEAR)


@dataclass(frozen=True)
class RowRuns:
    """`groups` runs of `per_group` items at the bound; positions < s need ceil(s * a / b) * c of each."""

    groups: int
    per_group: int
    a: int
    b: int
    c: int
    groups_per_entry: int | None  # with a dynamic batch holding this value: the groups of one entry

    def valid(self, builder: ir.IRBuilder, extent: ir.Value) -> ir.Value:
        rounded = builder.add(builder.mul(extent, const_i64(self.a)), const_i64(self.b - 1))
        return builder.mul(builder.udiv(rounded, const_i64(self.b)), const_i64(self.c))

    def launched(self, builder: ir.IRBuilder, valid: ir.Value, batch: ir.Value | None) -> ir.Value:
        """Items to launch: `valid` of each group (of the first `batch` entries with a dynamic batch)."""
        groups = const_i64(self.groups) if self.groups_per_entry is None or batch is None else \
            builder.mul(batch, const_i64(self.groups_per_entry))
        return builder.mul(groups, valid)


def row_runs(graph: Graph, node: Node, axes: frozenset, bound: int, work: int,
             batch: tuple[int, dict] | None) -> RowRuns | None:
    """How `node`'s `work` items walk the first dynamic dim (`axes`: what its output holds; `bound`: that
    dim's), or None to run them all. `batch`: (bound, value -> dim0 / batch) of a dynamic batch."""
    spec = kernel_for(node)
    plain = sorted(held.axis for held in axes if held.inner == 1 and held.extent == FIRST)
    if spec.batch_items is None or not plain or not _walks_rows(node, plain[0]):
        return None
    shape = node.outputs[0].shape
    axis = plain[0]
    if shape[axis] % bound:
        return None
    entries = math.prod(shape[:axis + 1])
    items = spec.batch_items(graph, node, entries)
    if items is None:
        return None
    a, b, c = items
    if -(-entries * a // b) * c != work or (bound * a) % b:
        return None
    groups = entries // bound
    per_entry = None
    if batch is not None and Value(node.name) in batch[1]:
        if groups % batch[0]:
            return None
        per_entry = groups // batch[0]
    return RowRuns(groups, bound * a // b * c, a, b, c, per_entry)


def emit_trampoline(module: ir.Module, task: ir.Function, per_group: int, valid_slot: int) -> ir.Function:
    """A task over groups x valid items (valid: an i64 stored in the operand array at `valid_slot`) that
    runs `task` on the matching items: item j is g * per_group + r for g = j / valid, r = j % valid."""
    function = ir.Function(module, task.function_type, name=f"{task.name}_rows")
    function.linkage = "internal"
    args, begin, end = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    slot = builder.gep(args, [const_i64(valid_slot)], source_etype=PTR, inbounds=True)
    valid = builder.ptrtoint(builder.load(slot, typ=PTR), I64, name="valid")
    first = builder.udiv(begin, valid)
    last = builder.udiv(builder.add(end, builder.sub(valid, const_i64(1))), valid)
    with for_range(builder, first, last, name="group") as group:
        start = builder.mul(group, valid)
        low = builder.select(builder.icmp_signed(">", begin, start), begin, start)
        stop = builder.add(start, valid)
        high = builder.select(builder.icmp_signed("<", end, stop), end, stop)
        offset = builder.sub(builder.mul(group, const_i64(per_group)), start)
        builder.call(task, [args, builder.add(low, offset), builder.add(high, offset)])
    builder.ret_void()
    return function


def load_extents(builder: ir.IRBuilder, args: ir.Value, slot: int, dims: int) -> tuple[ir.Value, ...]:
    """Inside a task: the `dims` dynamic dims' sizes, from the array whose pointer the operand array `args`
    holds at `slot`."""
    sizes = builder.load(builder.gep(args, [const_i64(slot)], source_etype=PTR, inbounds=True), typ=PTR,
                         name="extents")
    return tuple(builder.load(builder.gep(sizes, [const_i64(dim)], source_etype=I64, inbounds=True), typ=I64,
                              name=f"extent{dim}") for dim in range(dims))


def emit_extent_size(builder: ir.IRBuilder, extents, extent: Extent) -> ir.Value:
    """Extent.size in IR: the valid positions at the call's sizes `extents` (i64 values, one per dim)."""
    size = extents[extent.dim]
    for pads, span, stride, ceil in extent.steps:
        reach = builder.add(size, const_i64(pads - span + (stride - 1 if ceil else 0)))
        size = builder.add(builder.sdiv(reach, const_i64(stride)), const_i64(1))
    return size


def emit_block_filter(module: ir.Module, task: ir.Function, item_dims: tuple[int, ...], cuts: list,
                      sides: list, sizes_slot: int, dims: int) -> ir.Function:
    """A task running `task` on each of its items whose blocks start inside the valid positions: `cuts`
    (extent_marks.conv_blocks) say which digits of the item index count blocks of which side, `sides` the
    extent of each side (None: static); the sizes array is in the operand array at `sizes_slot`."""
    function = ir.Function(module, task.function_type, name=f"{task.name}_blocks")
    function.linkage = "internal"
    args, begin, end = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    extents = load_extents(builder, args, sizes_slot, dims)
    limits = [(digit, per_block, builder.mul(emit_extent_size(builder, extents, sides[side]), const_i64(per_unit)))
              for digit, per_block, per_unit, side in cuts if sides[side] is not None]
    with for_range(builder, begin, end, name="item") as item:
        inside = ir.Constant(ir.IntType(1), 1)
        for digit, per_block, limit in limits:
            block = builder.urem(builder.udiv(item, const_i64(math.prod(item_dims[digit + 1:]))),
                                 const_i64(item_dims[digit]))
            inside = builder.and_(inside, builder.icmp_signed("<", builder.mul(block, const_i64(per_block)), limit))
        with builder.if_then(inside):
            builder.call(task, [args, item, builder.add(item, const_i64(1))])
    builder.ret_void()
    return function
