"""CPU kernel registry: for each op type, which nodes it can compile and how.

A kernel is emitted as an LLVM function `void (ptr args, i64 begin, i64 end)`: `args` holds
the pointers of the node's inputs then outputs, and the function computes work items
[begin, end) of the output. `work_items` says how many items there are; the support
library spreads them over threads, so a kernel must compute each item independently of
how the range is split (that makes results identical for any thread count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from compiler.codegen.kernel_table import KernelTable
from compiler.codegen.tensor_operand import TensorOperand
from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType


@dataclass
class TensorArg(TensorOperand):
    """A kernel operand: its pointer inside the kernel function and its static type."""

    ptr: ir.Value
    type: TensorType


@dataclass
class KernelContext:
    """What an emitter sees: the builder inside the kernel function and the node's operands."""

    builder: ir.IRBuilder
    module: ir.Module
    graph: Graph
    node: Node
    inputs: list[TensorArg | None]
    outputs: list[TensorArg]
    begin: ir.Value
    end: ir.Value
    extents: tuple[ir.Value, ...] | None = None  # run-time sizes of dynamic dims (compiler/dynamic_extent.py)

    @property
    def extent(self) -> ir.Value | None:
        """The first dynamic dim's size: the one kernels stop at (registry.EXTENT_* attributes)."""
        return self.extents[0] if self.extents else None

    def constant(self, index: int):
        """The compile-time value of input `index` when a Constant produces it, else None."""
        return self.graph.constant_value(self.graph.input_values(self.node)[index])


@dataclass(frozen=True)
class KernelSpec:
    """How the cpu target compiles one family of ops.

    `check(graph, node)` returns why a node cannot be compiled (None when it can);
    `work_items(graph, node)` the number of independent work items; `emit(ctx)` the body;
    `in_place(graph, node)`, when given, the input whose storage the output may take (each of
    its elements read only to compute the same output element), or None.
    `batch_items(graph, node, bound)`, when given, says how the work items walk a batch of `bound`
    entries on the output's axis 0 (compiler/dynamic_batch.py): (A, B, C) such that items
    [0, ceil(n * A / B) * C) compute the first n entries (and read only theirs), or None when they do
    not walk the batch outermost; without it a dynamic-batch artifact runs all items.
    """

    op_types: tuple[str, ...]
    check: Callable[[Graph, Node], str | None]
    work_items: Callable[[Graph, Node], int]
    emit: Callable[[KernelContext], None]
    in_place: Callable[[Graph, Node], int | None] | None = None
    batch_items: Callable[[Graph, Node, int], "BatchItems | None"] | None = None


BatchItems = tuple[int, int, int]
"""(A, B, C): the first n batch entries need ceil(n * A / B) * C work items."""
BATCH_ROWS = "batch_rows"
"""Attribute a dynamic-batch artifact sets on MatMul/Gemm nodes: rows of one entry, which the GEMM's row
blocks then divide, so a batch below the bound computes no rows of the next entry."""
EXTENT_COLUMNS, EXTENT_DEPTH, EXTENT_REDUCED = "extent_columns", "extent_depth", "extent_reduced"
"""Attributes a dynamic-extent artifact sets on MatMul/Gemm nodes whose columns (n) or sum (k) run over the
dynamic dim, at its bound, and on Softmax nodes whose axis does: the kernel stops them at the run-time
extent (KernelContext.extent)."""
EXTENT_ROWS = "extent_rows"
"""[rows of a period of the bound, rows per position] on MatMul/Gemm nodes whose rows run over the dim: a
row block computes only the rows of positions below the extent."""
EXTENT_IMAGE = "extent_image"
"""[height's, width's] extents (compiler/extent_types.Extent as JSON, or None where static) set on 2-D
convolutions over a dynamic image size: their work items past the valid rows and columns are skipped
(codegen/llvm/extent_marks.conv_blocks)."""
EXTENT_COPY = "extent_copy"
"""[element stride, bound] of the output axis holding a dynamic extent, set on copy kernels (Transpose,
Gather): their loops along it stop at the run-time extent."""


def batch_major(items: int, bound: int, per_item: int = 1) -> BatchItems | None:
    """For `items` work items (times `per_item`) that walk the batch outermost in equal shares."""
    return (items // bound, 1, per_item) if items % bound == 0 else None


_TABLE = KernelTable("cpu", "compiler.codegen.llvm.kernels", frozenset({"registry", "common"}))


def register_kernel(spec: KernelSpec) -> KernelSpec:
    return _TABLE.register(spec)


def kernel_for(node: Node) -> KernelSpec | None:
    """The kernel for `node` (default-domain ops by op type, others by qualified name)."""
    return _TABLE.lookup(node)


def supported_op_types() -> list[str]:
    return _TABLE.op_types()


def in_place_input(graph: Graph, node: Node) -> int | None:
    """The memory plan's question for the cpu target: which input may `node`'s output overwrite."""
    return _TABLE.in_place_input(graph, node)
