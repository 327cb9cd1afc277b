"""kiln::QuantizedMatMul: activations [..., M, K] (8-bit) times packed constant int8 weights, requantized.

The rows of every batch are one [R, K] matrix. A work item owns a block of rows and a chunk of
output columns: it copies its rows into a stack panel, K padded to a multiple of 4 and int8
shifted to uint8 (rows past the end repeat the last one; their sums are dropped), then for each
`vectors`-vector block of columns and each `rows`-row block it runs int8_isa.emit_tile with the
activations broadcast (4 bytes a step) and the packed weights ([K4 / 4, Np, 4]) as vectors, and
stores the requantized lanes along the output row. Columns outer, rows inner: a weight block is
read from cache for all the item's rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, I8, I32, const_i64, load, store
from compiler.codegen.llvm.kernels.int8_isa import (ISAS, Int8Isa, Operands, Requantize, emit_tile, panel_problem,
                                                    store_lanes)
from compiler.codegen.llvm.kernels.linear_algebra import rolled_range, smin, stack_buffer, unravel, zero_fill
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.quantized_linear import SHIFT, round_up

ROW_BLOCKS = 4  # tile row blocks per item, at most
PARALLEL_ITEMS = 8  # work items wanted: column chunks split short matrices


@dataclass(frozen=True)
class GemmPlan:
    isa: Int8Isa
    rows: int  # R: all rows of all batches
    depth: int  # K
    columns: int  # N
    padded_columns: int  # Np

    @property
    def steps(self) -> int:
        return round_up(self.depth, 4) // 4

    @property
    def block(self) -> int:
        """Rows per item: whole tile row blocks."""
        return self.isa.rows * min(ROW_BLOCKS, math.ceil(self.rows / self.isa.rows))

    @property
    def chunk(self) -> int:
        """Columns per item: whole vector blocks, split so that there are enough items."""
        width = self.isa.columns
        blocks = math.ceil(self.columns / width)
        chunks = max(1, min(blocks, math.ceil(PARALLEL_ITEMS / math.ceil(self.rows / self.block))))
        return width * math.ceil(blocks / chunks)

    @property
    def item_dims(self) -> tuple[int, int]:
        return math.ceil(self.rows / self.block), math.ceil(self.columns / self.chunk)


def gemm_plan(graph: Graph, node: Node) -> GemmPlan:
    x, w = graph.input_types(node)[:2]
    return GemmPlan(ISAS[node.attrs["isa"]], math.prod(x.shape[:-1]), x.shape[-1], node.attrs["columns"], w.shape[1])


def _pack_rows(ctx: KernelContext, plan: GemmPlan, panel: ir.Value, first: ir.Value) -> None:
    """panel[i, :K] = row min(first + i, R - 1) of x as uint8 (the K padding stays 0 from the zero fill)."""
    b, x = ctx.builder, ctx.inputs[0]
    stride = plan.steps * 4
    with rolled_range(b, 0, plan.block, name="pack_row") as i:
        row = smin(b, b.add(first, i), const_i64(plan.rows - 1))
        source, target = b.mul(row, const_i64(plan.depth)), b.mul(i, const_i64(stride))
        with rolled_range(b, 0, plan.depth, name="pack_k") as k:
            byte = load(b, x.ptr, x.dtype, b.add(source, k))
            store(b, b.xor(byte, ir.Constant(I8, 0x80)) if SHIFT[x.dtype] else byte, panel, "uint8",
                  b.add(target, k))


def _emit(ctx: KernelContext) -> None:
    b, plan = ctx.builder, gemm_plan(ctx.graph, ctx.node)
    isa = plan.isa
    _, weights, offsets, multipliers = ctx.inputs
    out = ctx.outputs[0]
    operands, requantize = Operands(isa, vectors_unsigned=False), Requantize(ctx.node.attrs, isa.lanes)
    row_bytes = plan.steps * 4
    panel = stack_buffer(b, "uint8", plan.block * row_bytes)
    zero_fill(b, panel, "uint8", plan.block * row_bytes)
    with rolled_range(b, ctx.begin, ctx.end, name="item") as item:
        row_block, chunk = unravel(b, item, plan.item_dims)
        first_row = b.mul(row_block, const_i64(plan.block))
        _pack_rows(ctx, plan, panel, first_row)
        first_column = b.mul(chunk, const_i64(plan.chunk))
        end_column = smin(b, b.add(first_column, const_i64(plan.chunk)), const_i64(plan.columns))
        with rolled_range(b, first_column, end_column, step=isa.columns, name="column_block") as column:
            vectors = b.gep(weights.ptr, [b.mul(column, const_i64(4))], source_etype=I8, inbounds=True)
            with rolled_range(b, 0, plan.block, step=isa.rows, name="row_block") as block:
                rows = [b.gep(panel, [b.mul(b.add(block, const_i64(r)), const_i64(row_bytes))], source_etype=I8,
                              inbounds=True) for r in range(isa.rows)]
                sums = emit_tile(b, operands, plan.steps, rows, 4, vectors, plan.padded_columns * 4)
                _store(ctx, plan, requantize, sums, b.add(first_row, block), column, offsets, multipliers, out)


def _store(ctx, plan, requantize, sums, first_row, column, offsets, multipliers, out) -> None:
    """Requantize the tile and store it along the output rows (masked in the last column block)."""
    b, lanes = ctx.builder, plan.isa.lanes
    starts = [b.add(column, const_i64(j * lanes)) for j in range(plan.isa.vectors)]
    scales = [(_load_vector(b, offsets.ptr, I32, at, lanes), _load_vector(b, multipliers.ptr, F32, at, lanes))
              for at in starts]
    values = [[requantize(b, vector, *scale) for vector, scale in zip(row_sums, scales)] for row_sums in sums]
    left = b.sub(const_i64(plan.columns), column)
    with b.if_else(b.icmp_signed(">=", left, const_i64(plan.isa.columns))) as (whole, edge):
        for branch, masked in ((whole, False), (edge, True)):
            with branch:
                for r, row_values in enumerate(values):
                    row = b.add(first_row, const_i64(r))
                    with b.if_then(b.icmp_signed("<", row, const_i64(plan.rows))):
                        for j, value in enumerate(row_values):
                            count = b.sub(left, const_i64(j * lanes)) if masked else None
                            index = b.add(b.mul(row, const_i64(plan.columns)), starts[j])
                            store_lanes(b, value, out.ptr, index, count)


def _load_vector(b: ir.IRBuilder, base: ir.Value, element: ir.Type, index: ir.Value, lanes: int) -> ir.Value:
    """lanes elements from `index` (offsets and multipliers are padded to Np: always in bounds)."""
    pointer = b.gep(base, [index], source_etype=element, inbounds=True)
    return b.load(pointer, typ=ir.VectorType(element, lanes), align=4)


def _check(graph: Graph, node: Node) -> str | None:
    plan = gemm_plan(graph, node)
    return panel_problem(node, plan.block * plan.steps * 4, f"row block (K = {plan.depth})")


register_kernel(KernelSpec((f"{KILN_DOMAIN}::QuantizedMatMul",), _check,
                           lambda graph, node: math.prod(gemm_plan(graph, node).item_dims), _emit))
