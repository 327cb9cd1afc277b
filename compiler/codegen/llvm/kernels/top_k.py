"""TopK: the k best elements of each line along the axis, best first, by heap selection.

A work item is one line. Its k output slots hold a binary heap with the worst kept element at
the root: every further element is compared with the root and, when better, replaces it and
sifts down (O(n log k)). A final in-place heap sort leaves the slots best first. Elements rank
by value (NaN above every number, as numpy's sort puts it last), then by lower index, so ties
resolve as onnx.reference does. k comes from the static output type, so the k input may even
be computed at run time.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I64, const_i64, for_range, kind_of, load, store
from compiler.codegen.llvm.kernels.gather_nd import NUMERIC_KINDS
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node


class Entry(NamedTuple):
    value: ir.Value
    index: ir.Value  # i64 position along the axis


def _axis(graph: Graph, node: Node) -> int:
    return node.attrs.get("axis", -1) % len(graph.input_types(node)[0].shape)


def _lines(graph: Graph, node: Node) -> int:
    shape, axis = graph.input_types(node)[0].shape, _axis(graph, node)
    return math.prod(shape[:axis] + shape[axis + 1:]) if node.outputs[0].shape[axis] else 0


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    rank, axis = len(x.shape), node.attrs.get("axis", -1)
    if kind_of(x.dtype) not in NUMERIC_KINDS:
        return f"TopK on {x.dtype} is not compiled by the cpu target"
    if not -rank <= axis < rank:
        return f"TopK axis {axis} is out of range for rank {rank}"
    if node.outputs[0].shape[axis] > x.shape[axis]:
        return f"TopK k={node.outputs[0].shape[axis]} is larger than axis {axis} of shape {x.shape}"
    return None


class _Line:
    """The heap of one line: slot t is element (t * inner) of the line in both outputs."""

    def __init__(self, ctx: KernelContext, line: ir.Value):
        self.b, self.x, (self.values, self.indices) = ctx.builder, ctx.inputs[0], ctx.outputs
        self.largest = bool(ctx.node.attrs.get("largest", 1))
        axis = _axis(ctx.graph, ctx.node)
        self.n, self.k, self.inner = self.x.shape[axis], self.values.shape[axis], math.prod(self.x.shape[axis + 1:])
        b, inner = self.b, const_i64(self.inner)
        outer, position = b.udiv(line, inner), b.urem(line, inner)
        self.source = b.add(b.mul(outer, const_i64(self.n * self.inner)), position)
        self.target = b.add(b.mul(outer, const_i64(self.k * self.inner)), position)

    def _slot(self, t: ir.Value) -> ir.Value:
        return self.b.add(self.target, self.b.mul(t, const_i64(self.inner)))

    def element(self, index: ir.Value) -> Entry:
        position = self.b.add(self.source, self.b.mul(index, const_i64(self.inner)))
        return Entry(load(self.b, self.x.ptr, self.x.dtype, position), index)

    def read(self, t: ir.Value) -> Entry:
        slot = self._slot(t)
        value = load(self.b, self.values.ptr, self.values.dtype, slot)
        return Entry(value, load(self.b, self.indices.ptr, "int64", slot))

    def write(self, t: ir.Value, entry: Entry) -> None:
        slot = self._slot(t)
        store(self.b, entry.value, self.values.ptr, self.values.dtype, slot)
        store(self.b, entry.index, self.indices.ptr, "int64", slot)

    def _greater(self, a: ir.Value, c: ir.Value) -> ir.Value:
        b, kind = self.b, kind_of(self.x.dtype)
        if kind != "float":
            return (b.icmp_signed if kind == "signed" else b.icmp_unsigned)(">", a, c)
        nan_over_number = b.and_(b.fcmp_unordered("uno", a, a), b.fcmp_ordered("ord", c, c))
        return b.or_(b.fcmp_ordered(">", a, c), nan_over_number)

    def _same(self, a: ir.Value, c: ir.Value) -> ir.Value:
        b = self.b
        if kind_of(self.x.dtype) != "float":
            return b.icmp_unsigned("==", a, c)
        both_nan = b.and_(b.fcmp_unordered("uno", a, a), b.fcmp_unordered("uno", c, c))
        return b.or_(b.fcmp_ordered("==", a, c), both_nan)

    def before(self, a: Entry, c: Entry) -> ir.Value:
        """Whether `a` ranks ahead of `c`: a better value, or the same value at a lower index."""
        better = self._greater(a.value, c.value) if self.largest else self._greater(c.value, a.value)
        tie = self.b.and_(self._same(a.value, c.value), self.b.icmp_signed("<", a.index, c.index))
        return self.b.or_(better, tie)

    def sift_down(self, hole: ir.Value, size: ir.Value, entry: Entry) -> None:
        """Put `entry` at slot `hole` of the heap of `size` slots, moving worse children up past it."""
        b = self.b
        start = b.block
        header, body, move, done = (b.append_basic_block(f"sift.{name}") for name in ("header", "body", "move", "done"))
        b.branch(header)
        b.position_at_end(header)
        position = b.phi(I64, name="hole")
        position.add_incoming(hole, start)
        child = b.add(b.mul(position, const_i64(2)), const_i64(1))
        b.cbranch(b.icmp_signed("<", child, size), body, done)
        b.position_at_end(body)
        right = b.add(child, const_i64(1))
        right = b.select(b.icmp_signed("<", right, size), right, child)  # no right child: compare child with itself
        left_entry, right_entry = self.read(child), self.read(right)
        take_right = self.before(left_entry, right_entry)  # the worse child moves up
        worse = Entry(*(b.select(take_right, r, l) for r, l in zip(right_entry, left_entry)))
        pick = b.select(take_right, right, child)
        b.cbranch(self.before(entry, worse), move, done)
        b.position_at_end(move)
        self.write(position, worse)
        position.add_incoming(pick, move)
        b.branch(header)
        b.position_at_end(done)
        self.write(position, entry)


def _emit(ctx: KernelContext) -> None:
    b = ctx.builder
    with for_range(b, ctx.begin, ctx.end, name="line") as line_index:
        line = _Line(ctx, line_index)
        k = const_i64(line.k)
        with for_range(b, 0, line.k, name="fill") as t:
            line.write(t, line.element(t))
        with for_range(b, 0, line.k // 2, name="heapify") as u:
            t = b.sub(const_i64(line.k // 2 - 1), u)
            line.sift_down(t, k, line.read(t))
        with for_range(b, line.k, line.n, name="scan") as i:
            entry = line.element(i)
            with b.if_then(line.before(entry, line.read(const_i64(0)))):
                line.sift_down(const_i64(0), k, entry)
        with for_range(b, 1, line.k, name="sort") as u:
            last = b.sub(k, u)
            entry = line.read(last)
            line.write(last, line.read(const_i64(0)))
            line.sift_down(const_i64(0), last, entry)


register_kernel(KernelSpec(("TopK",), _check, _lines, _emit))
