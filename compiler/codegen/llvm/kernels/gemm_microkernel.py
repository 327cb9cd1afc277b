"""The register tile under every float GEMM and convolution: explicit vectors and llvm.fma.

A tile is MR rows by NV vectors of the host's widest float vector (AVX-512: 16 float32,
AVX2: 8). Its MR x NV accumulators live in registers (loop-carried phi values) for a whole run
of reduction steps: each step loads NV vectors of the B operand, broadcasts one A scalar per
row and issues MR x NV fused multiply-adds, so memory sees one vector load per MR FMAs instead
of a load and a store per FMA. The sum of every output element runs over the steps in order,
whatever rows or columns the caller groups into a tile, so results do not depend on tiling or
threads. The tile shape is chosen per problem from a small cycle model (FMA and load ports,
FMA latency) that also counts the padding wasted on rows and columns past the problem's edge.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache
from typing import Callable

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I32, I64, PTR, const_i64, element_type
from compiler.codegen.llvm.machine import MachineSpec

TILE_ROWS = {32: (16, 12, 8, 6), 16: (8, 6, 4, 3)}
"""Vector registers -> rows of a tile of 1, 2, 3, 4 vectors: accumulators, B vectors and a broadcast
fit with room for LLVM's scheduling (14 x 2 on AVX-512 already spills in convolution tiles)."""
TILE_EFFICIENCY = (0.82, 1.0, 1.0, 0.84)
"""Measured FMA rate of the tiles of 1..4 vectors in L1 (AVX-512 host), relative to the best: one
vector needs a load per FMA, four leave too few rows to hide the B loads."""
ALIGNED_TILE_EFFICIENCY = (0.82, 1.0, 1.0, 1.0)
"""The same for tiles whose B vectors are aligned loads (channel-vector convs load weight vectors): four
vectors lose nothing there: 6 x 4 and 4 x 4 tiles ran 0.92x and 0.90x the time of 8 x 2 ones (3x3 convs, 512
channels at 28 x 28; 128 channels at stride 2)."""
FMA_PORTS, LOAD_PORTS, FMA_LATENCY = 2, 2, 4
DEFAULT_CACHE = {1: 32 * 1024, 2: 1024 * 1024}  # bytes of L1d / L2 when sysfs does not say


@cache
def _vector_bits() -> int:
    """The host's widest float vector. Tiles are sized for the host; cross-compiled kernels stay
    correct (LLVM splits vectors wider than the target's), only their tiling is the host's."""
    return MachineSpec().vector_bits


def vector_lanes(dtype: str) -> int:
    """Elements of `dtype` in the host's widest float vector."""
    return max(2, _vector_bits() // (8 * np.dtype(dtype).itemsize))


def _registers() -> int:
    return 32 if _vector_bits() >= 512 else 16


@cache
def cache_bytes(level: int) -> int:
    """Size of the host's level-`level` data cache (per core), from sysfs; a common size when unknown."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(root)):
            with open(f"{root}/{index}/level") as level_file, open(f"{root}/{index}/type") as type_file:
                if int(level_file.read()) == level and type_file.read().strip() in ("Data", "Unified"):
                    with open(f"{root}/{index}/size") as size_file:
                        size = size_file.read().strip()
                    return int(size[:-1]) * 1024 if size.endswith("K") else int(size)
    except (OSError, ValueError):
        pass
    return DEFAULT_CACHE[level]


@dataclass(frozen=True)
class MicroTile:
    rows: int  # MR
    vectors: int  # NV
    lanes: int  # elements per vector
    aligned: bool = False  # B vectors load aligned (ALIGNED_TILE_EFFICIENCY)

    @property
    def columns(self) -> int:
        return self.vectors * self.lanes

    def step_cycles(self) -> float:
        """Cycles of one reduction step: FMA issue, loads (B vectors and A broadcasts), or FMA latency."""
        issue = max(self.rows * self.vectors / FMA_PORTS, (self.rows + self.vectors) / LOAD_PORTS, FMA_LATENCY)
        return issue / (ALIGNED_TILE_EFFICIENCY if self.aligned else TILE_EFFICIENCY)[self.vectors - 1]


def choose_tile(dtype: str, rows: int, columns: int, columns_divide: bool = False, aligned: bool = False,
                tile_columns: int = 0) -> MicroTile:
    """The tile computing a rows x columns output in the fewest modelled cycles (padding included);
    with `columns_divide`, only tiles whose columns divide `columns` (one vector must); `aligned` tiles
    load aligned B vectors (MicroTile.aligned); with `tile_columns`, only tiles that wide."""
    lanes, registers = vector_lanes(dtype), _registers()
    candidates = []
    for vectors, most in enumerate(TILE_ROWS[registers], start=1):
        if columns_divide and columns % (vectors * lanes) or tile_columns and tile_columns != vectors * lanes:
            continue
        for tile_rows in range(1, min(most, rows) + 1):  # fewer rows may divide `rows` (49 = 7 x 7)
            tile = MicroTile(tile_rows, vectors, lanes, aligned)
            calls = math.ceil(rows / tile_rows) * math.ceil(columns / tile.columns)
            candidates.append((calls * tile.step_cycles(), -tile.rows * tile.vectors, tile))
    return min(candidates, key=lambda c: c[:2])[2]


def round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def split_cycles(costs: list[float]) -> float:
    """Modelled time of work items of these costs: the slowest thread's share when 1, 2 and 4 threads
    each take a contiguous run of them (as the runtime splits them), times the threads, averaged."""
    slowest = [max(sum(costs[len(costs) * t // threads:len(costs) * (t + 1) // threads]) for t in range(threads))
               * threads for threads in (1, 2, 4)]
    return sum(slowest) / len(slowest)


def disable_unrolling(builder: ir.IRBuilder, latch: ir.Instruction) -> None:
    """Mark the loop whose back edge is the branch `latch` as not to be unrolled."""
    module = builder.module
    disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    loop_id = ir.values.MDValue(module, [disable], name=str(len(module.metadata)))  # distinct: one per loop
    loop_id.operands = (loop_id, disable)
    latch.set_metadata("llvm.loop", loop_id)


def _vector_suffix(vector_type: ir.VectorType) -> str:
    element = vector_type.element
    name = f"i{element.width}" if isinstance(element, ir.IntType) else "f32" if element == ir.FloatType() else "f64"
    return f"v{vector_type.count}{name}"


def splat(builder: ir.IRBuilder, scalar: ir.Value, lanes: int) -> ir.Value:
    vector_type = ir.VectorType(scalar.type, lanes)
    single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, ir.Constant(I32, 0))
    return builder.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


def _element_pointer(builder: ir.IRBuilder, base: ir.Value, dtype: str, index: ir.Value) -> ir.Value:
    return builder.gep(base, [index], source_etype=element_type(dtype), inbounds=True)


def load_vector(builder: ir.IRBuilder, base: ir.Value, dtype: str, index: ir.Value, lanes: int,
                aligned: bool = False) -> ir.Value:
    vector_type = ir.VectorType(element_type(dtype), lanes)
    align = lanes * np.dtype(dtype).itemsize if aligned else np.dtype(dtype).itemsize
    return builder.load(_element_pointer(builder, base, dtype, index), typ=vector_type, align=align)


def store_vector(builder: ir.IRBuilder, value: ir.Value, base: ir.Value, dtype: str, index: ir.Value,
                 aligned: bool = False) -> None:
    align = value.type.count * np.dtype(dtype).itemsize if aligned else np.dtype(dtype).itemsize
    pointer = builder.bitcast(_element_pointer(builder, base, dtype, index), ir.PointerType(value.type))  # stack
    builder.store(value, pointer, align=align)  # buffers have typed pointers, which must match what is stored


def _mask(builder: ir.IRBuilder, count: ir.Value, lanes: int) -> ir.Value:
    """The first `count` (i64, may be <= 0 or > lanes) of `lanes` lanes."""
    lane_ids = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
    return builder.icmp_signed("<", lane_ids, splat(builder, count, lanes))


def _declared(builder: ir.IRBuilder, symbol: str, function_type: ir.FunctionType) -> ir.Function:
    try:
        return builder.module.get_global(symbol)
    except KeyError:
        return ir.Function(builder.module, function_type, name=symbol)


def _masked_call(builder: ir.IRBuilder, kind: str, pointers: ir.Value, dtype: str, mask: ir.Value,
                 fill: ir.Constant | None = None) -> ir.Value:
    """llvm.masked.<kind> (load from a pointer, gather from a vector of pointers) of the lanes set in
    `mask` (a vector of i1), `fill` (zeros by default) in the rest: masked-off lanes are never read."""
    lanes = mask.type.count
    vector_type = ir.VectorType(element_type(dtype), lanes)
    pointer_type = PTR if kind == "load" else pointers.type
    symbol = f"llvm.masked.{kind}.{_vector_suffix(vector_type)}.{'p0' if kind == 'load' else f'v{lanes}p0'}"
    function = _declared(builder, symbol, ir.FunctionType(vector_type, [pointer_type, I32, mask.type, vector_type]))
    return builder.call(function, [pointers, ir.Constant(I32, np.dtype(dtype).itemsize), mask,
                                   fill if fill is not None else ir.Constant(vector_type, None)])


def masked_load(builder: ir.IRBuilder, base: ir.Value, dtype: str, index: ir.Value, lanes: int,
                count: ir.Value, stride: int = 1) -> ir.Value:
    """The first `count` (i64, may be <= 0 or > lanes) elements base[index + lane * stride]; zeros past
    them. Masked-off lanes are never read, so a vector may hang past the end of a buffer. Strided
    elements are gathered."""
    if stride == 1:
        return masked_load_where(builder, base, dtype, index, _mask(builder, count, lanes))
    offsets = ir.Constant(ir.VectorType(I32, lanes), [lane * stride for lane in range(lanes)])
    return masked_gather(builder, base, dtype, index, offsets, lanes, count)


def masked_load_where(builder: ir.IRBuilder, base: ir.Value, dtype: str, index: ir.Value, mask: ir.Value,
                      fill: ir.Constant | None = None) -> ir.Value:
    """base[index + lane] for the lanes set in `mask` (a vector of i1), `fill` (zeros by default) in the
    rest; masked-off lanes are never read, so they may lie outside the buffer."""
    pointer = builder.gep(base, [index], source_etype=element_type(dtype))  # not inbounds: it may hang past
    return _masked_call(builder, "load", pointer, dtype, mask, fill)


def masked_store(builder: ir.IRBuilder, value: ir.Value, base: ir.Value, dtype: str, index: ir.Value,
                 count: ir.Value) -> None:
    """base[index + lane] = value[lane] for the first `count` (i64, may be <= 0 or > lanes) lanes; the
    elements past them are not touched (llvm.masked.store)."""
    vector_type, lanes = value.type, value.type.count
    mask_type = ir.VectorType(ir.IntType(1), lanes)
    function = _declared(builder, f"llvm.masked.store.{_vector_suffix(vector_type)}.p0",
                         ir.FunctionType(ir.VoidType(), [vector_type, PTR, I32, mask_type]))
    pointer = builder.gep(base, [index], source_etype=element_type(dtype))  # not inbounds: it may hang past
    builder.call(function, [value, pointer, ir.Constant(I32, np.dtype(dtype).itemsize), _mask(builder, count, lanes)])


def masked_gather(builder: ir.IRBuilder, base: ir.Value, dtype: str, index: ir.Value, offsets: ir.Value,
                  lanes: int, count: ir.Value) -> ir.Value:
    """masked_load of base[index + offsets[lane]] (offsets: a vector of i32, so one gather instruction
    with 32-bit indices serves all lanes)."""
    start = builder.gep(base, [index], source_etype=element_type(dtype))
    pointers = builder.gep(start, [offsets], source_etype=element_type(dtype))
    pointers.type = ir.VectorType(PTR, lanes)  # llvmlite types a gep by its base pointer; this one is a vector
    return _masked_call(builder, "gather", pointers, dtype, _mask(builder, count, lanes))


@dataclass(frozen=True)
class Operand:
    """Where a tile reads an operand: step t, tap u reads at t * step + taps[u] from a base."""

    step: int
    taps: tuple[int, ...]


def carried_loop(builder: ir.IRBuilder, count: ir.Value, initial: list[ir.Value],
                 body: Callable[[ir.Value, list[ir.Value]], list[ir.Value]]) -> list[ir.Value]:
    """for t in [0, count): values = body(t, values), the values carried in registers (phis); returns
    the final values. The loop is not unrolled (its body is a whole register tile already)."""
    preheader = builder.block
    header = builder.append_basic_block("carried.header")
    body_block = builder.append_basic_block("carried.body")
    exit_block = builder.append_basic_block("carried.exit")
    builder.branch(header)
    builder.position_at_end(header)
    step = builder.phi(I64, name="t")
    step.add_incoming(const_i64(0), preheader)
    carried = [builder.phi(value.type) for value in initial]
    for phi, value in zip(carried, initial):
        phi.add_incoming(value, preheader)
    builder.cbranch(builder.icmp_signed("<", step, count), body_block, exit_block)
    builder.position_at_end(body_block)
    updated = body(step, list(carried))
    following = builder.add(step, const_i64(1), flags=["nsw"])
    disable_unrolling(builder, builder.branch(header))
    step.add_incoming(following, builder.block)
    for phi, value in zip(carried, updated):
        phi.add_incoming(value, builder.block)
    builder.position_at_end(exit_block)
    return carried


def fma(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
    """a * b + c on vectors, rounded once (llvm.fma)."""
    function = _declared(builder, f"llvm.fma.{_vector_suffix(a.type)}", ir.FunctionType(a.type, [a.type] * 3))
    return builder.call(function, [a, b, c])


def reduce_sum(builder: ir.IRBuilder, vector: ir.Value) -> ir.Value:
    """The sum of a vector's lanes, as a fixed tree of halves (the same order every time)."""
    width = vector.type.count
    while width > 1:
        width //= 2
        low = builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(I32, width), list(range(width))))
        high = builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(I32, width),
                                                                  list(range(width, 2 * width))))
        vector = builder.fadd(low, high)
    return builder.extract_element(vector, ir.Constant(I32, 0))


def transpose_square(builder: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The transpose of n vectors of n lanes (n a power of two), as their columns: the off-diagonal blocks
    of halves, then of quarters, ... are swapped, n shuffles of two vectors a level."""
    n = len(rows)
    half = n // 2
    while half:
        low = ir.Constant(ir.VectorType(I32, n), [j if j & half == 0 else n + j - half for j in range(n)])
        high = ir.Constant(ir.VectorType(I32, n), [j + half if j & half == 0 else n + j for j in range(n)])
        swapped = list(rows)
        for i in (i for i in range(n) if i & half == 0):
            swapped[i] = builder.shuffle_vector(rows[i], rows[i + half], low)
            swapped[i + half] = builder.shuffle_vector(rows[i], rows[i + half], high)
        rows, half = swapped, half // 2
    return rows


def emit_register_tile(builder: ir.IRBuilder, tile: MicroTile, dtype: str, steps: ir.Value,
                       a_rows: list[ir.Value], a: Operand, b_base: ir.Value, b: Operand,
                       acc: ir.Value, acc_index: ir.Value, acc_stride: int, fresh: bool = False) -> None:
    """acc[r, :columns] += sum over steps t and taps u of A_r(t, u) * B(t, u, :columns); with `fresh`,
    acc[r, :columns] = that sum (the accumulators start from zero, not from acc).

    A_r(t, u) is the scalar at a_rows[r] + t * a.step + a.taps[u] (one pointer per tile row);
    B(t, u, :) the tile.columns elements at b_base + t * b.step + b.taps[u] (any alignment);
    row r of the accumulator starts at element acc_index + r * acc_stride of the stack tile
    `acc` (vector aligned). The taps of one step are unrolled; the steps loop is rolled.
    """
    element = element_type(dtype)
    starts = [builder.add(acc_index, const_i64(r * acc_stride + j * tile.lanes))
              for r in range(tile.rows) for j in range(tile.vectors)]
    zero = ir.Constant(ir.VectorType(element, tile.lanes), None)
    initial = [zero if fresh else load_vector(builder, acc, dtype, start, tile.lanes, aligned=True)
               for start in starts]

    def step(t: ir.Value, sums: list[ir.Value]) -> list[ir.Value]:
        a_offset, b_offset = builder.mul(t, const_i64(a.step)), builder.mul(t, const_i64(b.step))
        for a_tap, b_tap in zip(a.taps, b.taps):
            b_index = builder.add(b_offset, const_i64(b_tap))
            vectors = [load_vector(builder, b_base, dtype, builder.add(b_index, const_i64(j * tile.lanes)), tile.lanes)
                       for j in range(tile.vectors)]
            a_index = builder.add(a_offset, const_i64(a_tap))
            for r, row_pointer in enumerate(a_rows):
                scalar = builder.load(_element_pointer(builder, row_pointer, dtype, a_index), typ=element)
                broadcast = splat(builder, scalar, tile.lanes)
                for j in range(tile.vectors):
                    index = r * tile.vectors + j
                    sums[index] = fma(builder, broadcast, vectors[j], sums[index])
        return sums

    for value, start in zip(carried_loop(builder, steps, initial, step), starts):
        store_vector(builder, value, acc, dtype, start, aligned=True)
