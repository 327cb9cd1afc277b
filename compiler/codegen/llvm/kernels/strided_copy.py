"""Strided box copies: the one loop nest behind every data-movement kernel.

A data-movement op is planned at compile time as a list of `Copy` boxes
(compiler/codegen/copy_plan.py, shared with the gpu target). Box dims that walk memory together
are merged first, so most boxes become a few long unit-stride runs, copied with llvm.memcpy.
Elements change dtype through the kernel's `convert` when the source and target dtypes differ
(None: the bits move unchanged, as BitCast needs).

A transposing box (its target's unit-stride dim reads a strided source while another dim reads
the source contiguously) whose rows touch more source lines than L1 keeps walks TILE x TILE
tiles of those two dims; the edges left over when they do not divide by TILE become plain
boxes of their own.

Work items: each box is cut into items of MIN_ITEM..MAX_ITEM elements (the outer box dims are
enumerated, the dim where an item reaches MIN_ITEM is chunked) and the boxes' items are laid
end to end, so threads share the work evenly however many boxes an op has. An item is
always copied by the same code, whatever range it falls in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
from llvmlite import ir

from compiler.codegen.copy_plan import Copy, Dim, Plan, coalesced_dims, plan_problem
from compiler.codegen.llvm.irhelpers import ELEMENT_TYPES, I1, I8, I64, PTR, const_i64, convert, element_type, for_range
from compiler.codegen.llvm.kernels.narrow_types import cast
from compiler.codegen.llvm.kernels.registry import (EXTENT_COPY, BatchItems, KernelContext, KernelSpec, TensorArg,
                                                     batch_major, register_kernel)
from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType, dtype_of_array, numpy_dtype

MIN_ITEM = 2048  # elements: enough to amortize decoding an item's coordinates
MAX_ITEM = 16384  # elements: small enough that medium tensors still spread over the threads
TILE = 16  # side of the square tiles a transposing copy walks, so its source and target lines stay in cache
UNTILED_LINES = 256  # a transposing row touching up to this many source lines keeps them in L1 without tiles

Convert = Callable[[ir.IRBuilder, ir.Value, str, str], ir.Value]
"""(builder, source element, source dtype, target dtype) -> the element in the target dtype."""


class _Offsets(NamedTuple):
    source: ir.Value
    target: ir.Value
    position: ir.Value


class _Box(NamedTuple):
    """A copy's coalesced dims (outermost first) and base offsets: what one loop nest walks."""

    dims: tuple[Dim, ...]
    source_offset: int
    target_offset: int

    def part(self, level: int, start: int, size: int) -> "_Box":
        """The sub-box taking `size` positions from `start` along dims[level]."""
        dim = self.dims[level]
        return _Box(self.dims[:level] + (dim._replace(size=size),) + self.dims[level + 1:],
                    self.source_offset + start * dim.source, self.target_offset + start * dim.target)


@dataclass(frozen=True)
class _Schedule:
    """Items enumerate box.dims[:split] and chunks of `chunk` positions along box.dims[split]."""

    box: _Box
    split: int
    chunk: int

    @property
    def chunks(self) -> int:
        return -(-self.box.dims[self.split].size // self.chunk)

    @property
    def items(self) -> int:
        return math.prod(d.size for d in self.box.dims[:self.split]) * self.chunks


def _coalesce(copy: Copy) -> _Box:
    return _Box(coalesced_dims(copy), copy.source_offset, copy.target_offset)


def _boxes(copy: Copy) -> list[_Box]:
    """The loop nests of `copy`: none when empty; a tiled core plus edge strips when it transposes."""
    if 0 in copy.sizes:
        return []
    box = _coalesce(copy)
    dims, last = box.dims, len(box.dims) - 1
    inner = dims[last]
    unit = next((level for level, dim in enumerate(dims[:last]) if dim.source == 1), None)
    if copy.gathered or unit is None or inner.target != 1 or abs(inner.source) <= 1 \
            or dims[unit].size < TILE or inner.size <= UNTILED_LINES:
        return [box]
    rows, columns = dims[unit].size // TILE * TILE, inner.size // TILE * TILE
    top = box.part(unit, 0, rows)
    core = top.part(last, 0, columns)
    tiles = core.dims[:unit] + (Dim(rows // TILE, *(s * TILE for s in dims[unit][1:])),) + core.dims[unit + 1:last] + \
        (Dim(columns // TILE, *(s * TILE for s in inner[1:])), dims[unit]._replace(size=TILE), inner._replace(size=TILE))
    strips = [top.part(last, columns, inner.size - columns), box.part(unit, rows, dims[unit].size - rows)]
    return [core._replace(dims=tiles)] + [strip for strip in strips if all(d.size for d in strip.dims)]


def _schedule(box: _Box) -> _Schedule:
    """Split the box's dims where the items reach MIN_ITEM elements; chunk that dim to MAX_ITEM."""
    tails = [math.prod(d.size for d in box.dims[level:]) for level in range(len(box.dims) + 1)]
    split = max((level for level in range(len(box.dims)) if tails[level] >= MIN_ITEM), default=0)
    return _Schedule(box, split, min(box.dims[split].size, max(1, MAX_ITEM // tails[split + 1])))


def _baked(ctx: KernelContext, array: np.ndarray, name: str) -> ir.GlobalVariable:
    data = bytearray(np.ascontiguousarray(array).tobytes())
    variable = ir.GlobalVariable(ctx.module, ir.ArrayType(I8, len(data)), name=name)
    variable.global_constant = True
    variable.linkage = "internal"
    variable.align = 64
    variable.initializer = ir.Constant(variable.value_type, data)
    return variable


class _CopyEmitter:
    """Emits the loop nest of one box of `copy` for its local work items [lo, hi)."""

    def __init__(self, builder: ir.IRBuilder, copy: Copy, schedule: _Schedule, source: TensorArg, target: TensorArg,
                 indices: TensorArg | None, convert: Convert | None, name: str, limit: "ExtentLimit | None" = None):
        self.builder, self.copy, self.schedule, self.name = builder, copy, schedule, name
        self.dims = schedule.box.dims
        self.limits = {} if limit is None else limit.levels(builder, self.dims)
        self.source, self.target, self.indices = source, target, indices
        self.convert = convert
        self.converting = convert is not None and self.source.dtype != self.target.dtype
        self.move_type = ir.IntType(8 * numpy_dtype(self.target.dtype).itemsize)
        levels = [level for level, dim in enumerate(self.dims) if dim.position]
        # the level whose loop reads an index (-1: one index for the whole box; None: nothing gathered)
        self.gather_level = (levels[-1] if levels else -1) if copy.gathered else None

    def emit(self, lo: ir.Value, hi: ir.Value) -> None:
        b, schedule, box = self.builder, self.schedule, self.schedule.box
        split_dim = self.dims[schedule.split]
        with for_range(b, lo, hi, name=f"{self.name}.item") as item:
            rest, start = item, const_i64(0)
            if schedule.chunks > 1:
                start = b.mul(b.urem(rest, const_i64(schedule.chunks)), const_i64(schedule.chunk))
                rest = b.udiv(rest, const_i64(schedule.chunks))
            offsets = _Offsets(const_i64(box.source_offset), const_i64(box.target_offset), const_i64(0))
            inside = ir.Constant(I1, 1)
            for level in reversed(range(schedule.split)):
                size = const_i64(self.dims[level].size)
                coordinate = b.urem(rest, size) if level else rest
                rest = b.udiv(rest, size)
                offsets = self._advance(offsets, self.dims[level], coordinate)
                if level in self.limits:
                    inside = b.and_(inside, b.icmp_signed("<", coordinate, self.limits[level]))
            offsets = self._advance(offsets, split_dim, start)
            if self.gather_level is not None and self.gather_level < schedule.split:
                offsets = self._gather(offsets)
            length = const_i64(schedule.chunk)
            stop = self.limits.get(schedule.split, const_i64(split_dim.size))
            if split_dim.size % schedule.chunk or schedule.split in self.limits:
                remaining = b.sub(stop, start)  # below 0 in an item past the extent, which copies nothing
                length = b.select(b.icmp_signed("<", remaining, length), remaining, length)
                length = b.select(b.icmp_signed("<", length, const_i64(0)), const_i64(0), length)
            with b.if_then(inside):
                self._walk(schedule.split, offsets, length)

    def _walk(self, level: int, offsets: _Offsets, length: ir.Value) -> None:
        """Copy dims[level:] starting at `offsets`, with `length` steps along dims[level]."""
        b, dim = self.builder, self.dims[level]
        innermost = level == len(self.dims) - 1
        if innermost and level != self.gather_level and not self.converting and dim.source == dim.target == 1:
            self._memcpy(offsets, length)
            return
        hoisted = self._read(offsets.source) if innermost and level != self.gather_level and dim.source == 0 else None
        with for_range(b, 0, length, name=f"{self.name}.d{level}") as index:
            here = self._advance(offsets, dim, index)
            if level == self.gather_level:
                here = self._gather(here)
            if innermost:
                value = hoisted if hoisted is not None else self._read(here.source)
                b.store(value, self._address(self.target.ptr, here.target))
            else:
                self._walk(level + 1, here, self.limits.get(level + 1, const_i64(self.dims[level + 1].size)))

    def _advance(self, offsets: _Offsets, dim: Dim, coordinate: ir.Value) -> _Offsets:
        b = self.builder
        return _Offsets(*(b.add(offset, b.mul(coordinate, const_i64(stride))) if stride else offset
                          for offset, stride in zip(offsets, dim[1:])))

    def _gather(self, offsets: _Offsets) -> _Offsets:
        """Add the gathered term: the index read at offsets.position, wrapped if negative, clamped."""
        b, gathered = self.builder, self.copy.gathered
        pointer = b.gep(self.indices.ptr, [offsets.position], source_etype=element_type(self.indices.dtype), inbounds=True)
        index = convert(b, b.load(pointer, typ=element_type(self.indices.dtype)), self.indices.dtype, "int64")
        zero, size = const_i64(0), const_i64(gathered.axis_size)
        index = b.select(b.icmp_signed("<", index, zero), b.add(index, size), index)
        index = b.select(b.icmp_signed("<", index, zero), zero, index)
        last = const_i64(gathered.axis_size - 1)
        index = b.select(b.icmp_signed(">", index, last), last, index)
        return offsets._replace(source=b.add(offsets.source, b.mul(index, const_i64(gathered.stride))))

    def _address(self, base: ir.Value, index: ir.Value, dtype: str | None = None) -> ir.Value:
        element = element_type(dtype) if dtype else self.move_type
        return self.builder.gep(base, [index], source_etype=element, inbounds=True)

    def _read(self, index: ir.Value) -> ir.Value:
        """One source element, as the target's bits (moves) or converted to the target dtype (Cast)."""
        b = self.builder
        if not self.converting:
            return b.load(self._address(self.source.ptr, index), typ=self.move_type)
        value = b.load(self._address(self.source.ptr, index, self.source.dtype), typ=element_type(self.source.dtype))
        value = self.convert(b, value, self.source.dtype, self.target.dtype)
        return b.bitcast(value, self.move_type) if value.type != self.move_type else value

    def _memcpy(self, offsets: _Offsets, length: ir.Value) -> None:
        b = self.builder
        memcpy = b.module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
        size = b.mul(length, const_i64(self.move_type.width // 8))
        b.call(memcpy, [self._address(self.target.ptr, offsets.target), self._address(self.source.ptr, offsets.source),
                        size, ir.Constant(I1, 0)])


@dataclass(frozen=True)
class ExtentLimit:
    """A dynamic extent along the target's axis of element stride `stride` (registry.EXTENT_COPY): box dims
    walking that axis whole stop at the run-time `extent`, those walking its tiles at the tiles holding it.
    The positions past it are padding, so a copy may stop there (or not) as it likes."""

    stride: int
    bound: int
    extent: ir.Value

    def levels(self, builder: ir.IRBuilder, dims: Sequence[Dim]) -> dict[int, ir.Value]:
        limits = {}
        for level, dim in enumerate(dims):
            if dim.target == self.stride and dim.size == self.bound:
                limits[level] = self.extent
            elif dim.target == self.stride * TILE and dim.size == self.bound // TILE:
                limits[level] = builder.udiv(builder.add(self.extent, const_i64(TILE - 1)), const_i64(TILE))
        return limits


def emit_copies(ctx: KernelContext, copies: Sequence[Copy], convert: Convert | None = cast) -> None:
    """Emit `copies` with their work items laid end to end; computes items [ctx.begin, ctx.end). With a dynamic
    extent along the output (registry.EXTENT_COPY), the positions past it are left as they are."""
    b, first, number = ctx.builder, 0, 0
    marked = ctx.node.attrs.get(EXTENT_COPY)
    limit = ExtentLimit(marked[0], marked[1], ctx.extent) if marked and ctx.extent is not None else None
    baked: dict[int, TensorArg] = {}  # each array once, however many boxes read it
    for copy in copies:
        if isinstance(copy.source, np.ndarray):
            if id(copy.source) not in baked:
                variable = _baked(ctx, copy.source, f"{b.function.name}.data{len(baked)}")
                baked[id(copy.source)] = TensorArg(variable, TensorType(dtype_of_array(copy.source), copy.source.shape))
            source = baked[id(copy.source)]
        else:
            source = ctx.inputs[copy.source]
        indices = ctx.inputs[copy.gathered.indices] if copy.gathered else None
        for schedule in map(_schedule, _boxes(copy)):
            lo, hi = b.sub(ctx.begin, const_i64(first)), b.sub(ctx.end, const_i64(first))
            lo = b.select(b.icmp_signed("<", lo, const_i64(0)), const_i64(0), lo)
            hi = b.select(b.icmp_signed(">", hi, const_i64(schedule.items)), const_i64(schedule.items), hi)
            _CopyEmitter(b, copy, schedule, source, ctx.outputs[copy.target], indices, convert,
                         f"box{number}", limit).emit(lo, hi)
            first, number = first + schedule.items, number + 1


def copy_work_items(copies: Sequence[Copy]) -> int:
    return sum(_schedule(box).items for copy in copies for box in _boxes(copy))


def copy_batch_items(copies: Sequence[Copy], bound: int) -> BatchItems | None:
    """KernelSpec.batch_items of one untiled copy, whose outermost dim holds the batch: its items walk
    dims[:split] row-major, then chunks along dims[split]."""
    boxes = [box for copy in copies for box in _boxes(copy)]
    if len(boxes) != 1 or boxes[0].dims[0].size % bound:
        return None
    schedule = _schedule(boxes[0])
    if schedule.split == 0:
        return boxes[0].dims[0].size // bound, schedule.chunk, 1
    return batch_major(schedule.items, bound)


Conversion = Callable[[Node], "Convert | None"]
"""node -> how its copies convert elements (None: bits move unchanged)."""


def register_copy_kernel(op_types: tuple[str, ...], plan: Plan,
                         conversion: Conversion = lambda node: cast) -> KernelSpec:
    """Register ops whose kernel is the copies `plan` returns, converting elements as `conversion` says."""

    def check(graph: Graph, node: Node) -> str | None:
        dtypes = [t.dtype for t in graph.input_types(node) if t is not None] + [t.dtype for t in node.outputs]
        unknown = sorted(set(dtypes) - set(ELEMENT_TYPES))
        if unknown:
            return f"{node.op_type} on {', '.join(unknown)} is not compiled by the cpu target"
        return plan_problem(plan, graph, node)

    return register_kernel(KernelSpec(
        op_types, check, lambda graph, node: copy_work_items(plan(graph, node)),
        lambda ctx: emit_copies(ctx, plan(ctx.graph, ctx.node), conversion(ctx.node)),
        batch_items=lambda graph, node, bound: copy_batch_items(plan(graph, node), bound)))
