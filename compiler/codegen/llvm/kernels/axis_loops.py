"""The kept × reduced loop nest shared by reductions, normalizations and global pools.

A tensor is seen as kept dims and reduced dims (size-1 dims dropped, adjacent dims of one
kind merged). When the innermost dim is kept it forms the "columns": contiguous in both the
input and a reduced output, so the innermost loop runs over them. A work item is a block of
up to BLOCK columns of one kept row; it reduces each of its columns over the whole reduced
set in one fixed order, so results do not depend on how items are split across threads.
Running per-column values live in `Scratch` stack arrays, which LLVM turns into registers
when a block is one column (reductions over the innermost dims).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Sequence

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, for_range
from compiler.codegen.llvm.kernels.linear_algebra import rolled_range
from compiler.codegen.llvm.kernels.registry import BatchItems, batch_major

BLOCK = 256  # most columns per work item: bounds each Scratch array (BLOCK elements on the stack)

# Float running sums/products may be reassociated so LLVM can vectorize a reduction over the
# innermost dim: the order is then fixed by the compiled code, the same in every work item
# and for any thread count, as with vectorized ONNX Runtime kernels.
REASSOCIATE = ("reassoc",)


class Dim(NamedTuple):
    size: int
    stride: int  # input elements between neighbours along this dim


@dataclass(frozen=True)
class AxisSplit:
    """A row-major shape cut into kept `rows`, `reduced` dims and `columns` (1 when the innermost dim is reduced)."""

    rows: tuple[Dim, ...]
    reduced: tuple[Dim, ...]
    columns: int

    @property
    def block(self) -> int:
        return max(1, min(self.columns, BLOCK))

    @property
    def blocks_per_row(self) -> int:
        return -(-self.columns // self.block)

    @property
    def work_items(self) -> int:
        return math.prod(dim.size for dim in self.rows) * self.blocks_per_row

    def batch_items(self, bound: int) -> BatchItems | None:
        """KernelSpec.batch_items: items are (row, block) with the batch in the outermost kept rows."""
        return batch_major(math.prod(dim.size for dim in self.rows), bound, self.blocks_per_row)

    @property
    def reduced_count(self) -> int:
        return math.prod(dim.size for dim in self.reduced)


def split_axes(shape: Sequence[int], axes: Iterable[int]) -> AxisSplit:
    """Split `shape` by the (non-negative) reduced `axes`."""
    axes = set(axes)
    groups: list[list] = []  # [is reduced, size], outermost first
    for axis, size in enumerate(shape):
        if size == 1:
            continue
        if groups and groups[-1][0] == (axis in axes):
            groups[-1][1] *= size
        else:
            groups.append([axis in axes, size])
    dims, stride = [], 1
    for reduced, size in reversed(groups):
        dims.insert(0, (reduced, Dim(size, stride)))
        stride *= size
    columns = dims.pop()[1].size if dims and not dims[-1][0] else 1
    return AxisSplit(tuple(d for r, d in dims if not r), tuple(d for r, d in dims if r), columns)


class Cell(NamedTuple):
    """One column during a pass: its Scratch `slot`, its `kept` index (the element of a reduced
    output), and in a sweep the input `offset` and flat `position` inside the reduced set."""

    slot: ir.Value
    kept: ir.Value
    offset: ir.Value | None
    position: ir.Value | None


class Scratch:
    """A per-column running value for the columns of one work item; create it before the item loop."""

    def __init__(self, builder: ir.IRBuilder, split: AxisSplit, value_type: ir.Type):
        self.builder, self.value_type = builder, value_type
        self.array = builder.alloca(value_type, size=const_i64(split.block))

    def _pointer(self, cell: Cell) -> ir.Value:
        return self.builder.gep(self.array, [cell.slot], inbounds=True)

    def load(self, cell: Cell) -> ir.Value:
        return self.builder.load(self._pointer(cell), typ=self.value_type)

    def store(self, cell: Cell, value: ir.Value) -> None:
        self.builder.store(value, self._pointer(cell))


@dataclass
class Segment:
    """The work item being emitted: `count` columns starting at input `offset` and kept index `kept`."""

    builder: ir.IRBuilder
    split: AxisSplit
    offset: ir.Value
    kept: ir.Value
    count: ir.Value

    def _each_column(self, visit: Callable[[Cell], None], offset, position) -> None:
        builder = self.builder
        if self.split.block == 1:
            visit(Cell(const_i64(0), self.kept, offset, position))
            return
        # rolled: a short block (a blocked global pool's c lanes) unrolled would leave the reduced loop innermost,
        # which LLVM vectorizes with gathers (SqueezeNet's global pool: 2.4x ONNX Runtime's time on AMD Zen 4)
        with rolled_range(builder, 0, self.count, name="col") as slot:
            column_offset = None if offset is None else builder.add(offset, slot)
            visit(Cell(slot, builder.add(self.kept, slot), column_offset, position))

    def columns(self, visit: Callable[[Cell], None]) -> None:
        """visit(cell) once per column (to set up or finish its Scratch values)."""
        self._each_column(visit, None, None)

    def sweep(self, visit: Callable[[Cell], None], start: ir.Value | None = None, stop: ir.Value | None = None) -> None:
        """visit(cell) for every (reduced element, column), reduced elements in row-major order; with one
        reduced dim, only its elements [start, stop) when given (a dynamic extent's positions)."""
        builder = self.builder
        offset, position = self.offset, const_i64(0)
        with ExitStack() as loops:
            for index, dim in enumerate(self.split.reduced):
                low, high = (start or const_i64(0), stop or const_i64(dim.size)) if len(self.split.reduced) == 1 \
                    else (0, dim.size)
                step = loops.enter_context(for_range(builder, low, high, name=f"red{index}"))
                offset = builder.add(offset, builder.mul(step, const_i64(dim.stride)))
                position = builder.add(builder.mul(position, const_i64(dim.size)), step)
            self._each_column(visit, offset, position)


def emit_segments(builder: ir.IRBuilder, split: AxisSplit, begin: ir.Value, end: ir.Value,
                  body: Callable[[Segment], None]) -> None:
    """body(segment) for work items [begin, end) of `split`."""
    with for_range(builder, begin, end, name="item") as item:
        blocks = const_i64(split.blocks_per_row)
        row, block = builder.udiv(item, blocks), builder.urem(item, blocks)
        first = builder.mul(block, const_i64(split.block))
        left = builder.sub(const_i64(split.columns), first)
        count = builder.select(builder.icmp_signed("<", left, const_i64(split.block)), left, const_i64(split.block))
        offset, remaining = first, row
        for dim in reversed(split.rows):
            coordinate = builder.urem(remaining, const_i64(dim.size))
            remaining = builder.udiv(remaining, const_i64(dim.size))
            offset = builder.add(offset, builder.mul(coordinate, const_i64(dim.stride)))
        kept = builder.add(builder.mul(row, const_i64(split.columns)), first)
        body(Segment(builder, split, offset, kept, count))
