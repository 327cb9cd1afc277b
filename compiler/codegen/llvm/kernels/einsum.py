"""Einsum: a nested loop over the equation's labels, output labels outside, summed labels inside.

The equation is resolved at compile time into one extent per label and, per operand, one
element stride per label: a label repeated inside an operand (a diagonal, 'ii->i') adds its
axes' strides, a label the operand lacks or broadcasts (size 1) has stride 0. Ellipsis dims
become labels of their own, aligned from the right as numpy does; an implicit output ('ij,jk')
is the ellipsis dims then the labels used once, in alphabetical order.

A work item is one row of the output (all output labels but the last); each output element
is a sum over the summed labels in one fixed order, accumulated in the tensor dtype.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, element_type, for_range, kind_of, load, store
from compiler.codegen.llvm.kernels.axis_loops import REASSOCIATE
from compiler.codegen.llvm.kernels.linear_algebra import unravel
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node

DTYPES = ("float32", "float64", "int32", "int64")
ELLIPSIS = "..."


@dataclass(frozen=True)
class Contraction:
    sizes: dict[str, int]  # label -> extent
    output: tuple[str, ...]  # output labels, outermost first
    summed: tuple[str, ...]  # labels summed over, outermost first
    strides: tuple[dict[str, int], ...]  # per operand: label -> element stride (0 when absent or broadcast)


def _term_labels(term: str, rank: int) -> list[str]:
    """One label per axis; the k-th ellipsis dim from the right is labelled '...k'."""
    before, ellipsis, after = term.partition(ELLIPSIS)
    letters = before + after
    if not all(c.isascii() and c.isalpha() for c in letters):
        raise ValueError(f"Einsum term '{term}' has characters other than letters and one '...'")
    extra = rank - len(letters)
    if extra < 0 or (extra and not ellipsis):
        raise ValueError(f"Einsum term '{term}' does not match an input of rank {rank}")
    return list(before) + [f"{ELLIPSIS}{extra - i}" for i in range(extra)] + list(after)


def contraction(equation: str, shapes: list[tuple[int, ...]]) -> Contraction:
    """Resolve `equation` for inputs of `shapes`; ValueError says what does not fit."""
    inputs, arrow, result = equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"Einsum equation '{equation}' has {len(terms)} terms for {len(shapes)} inputs")
    labels = [_term_labels(term, len(shape)) for term, shape in zip(terms, shapes)]
    sizes: dict[str, int] = {}
    for term_labels, shape in zip(labels, shapes):
        for label, size in zip(term_labels, shape):
            known = sizes.get(label, 1)
            if size != known and 1 not in (size, known):
                raise ValueError(f"Einsum label '{label}' has sizes {known} and {size} in '{equation}'")
            sizes[label] = size if known == 1 else known
    ellipsis_rank = max((int(label[len(ELLIPSIS):]) for label in sizes if label.startswith(ELLIPSIS)), default=0)
    ellipsis = [f"{ELLIPSIS}{k}" for k in range(ellipsis_rank, 0, -1)]
    if arrow:
        before, has_ellipsis, after = result.partition(ELLIPSIS)
        if ellipsis and not has_ellipsis:
            raise ValueError(f"Einsum output '{result}' needs '...' for the inputs' ellipsis dims")
        output = list(before) + ellipsis + list(after)
        if len(set(output)) != len(output) or any(label not in sizes for label in output):
            raise ValueError(f"Einsum output '{result}' repeats a label or names one no input has")
    else:
        counts = Counter(label for term_labels in labels for label in term_labels if not label.startswith(ELLIPSIS))
        output = ellipsis + sorted(label for label, count in counts.items() if count == 1)
    summed = tuple(label for label in sizes if label not in output)  # in order of first use
    strides = []
    for term_labels, shape in zip(labels, shapes):
        operand: dict[str, int] = {}
        for label, size, stride in zip(term_labels, shape, dense_strides(shape)):
            operand[label] = operand.get(label, 0) + (stride if size == sizes[label] else 0)
        strides.append(operand)
    return Contraction(sizes, tuple(output), summed, tuple(strides))


def _contraction(graph: Graph, node: Node) -> Contraction:
    return contraction(node.attrs["equation"], [t.shape for t in graph.input_types(node)])


def _check(graph: Graph, node: Node) -> str | None:
    dtypes = {t.dtype for t in graph.input_types(node)}
    if not dtypes <= set(DTYPES):
        return (f"Einsum on {', '.join(sorted(dtypes))} is not compiled by the cpu target "
                f"(it handles {', '.join(DTYPES)})")
    try:
        plan = _contraction(graph, node)
    except ValueError as error:
        return str(error)
    shape = tuple(plan.sizes[label] for label in plan.output)
    if shape != node.outputs[0].shape:
        return f"Einsum '{node.attrs['equation']}' gives shape {shape}, not the inferred {node.outputs[0].shape}"
    return None


def _rows(graph: Graph, node: Node) -> int:
    plan = _contraction(graph, node)
    return math.prod(plan.sizes[label] for label in plan.output[:-1]) if all(node.outputs[0].shape) else 0


def _emit(ctx: KernelContext) -> None:
    b, operands, y = ctx.builder, ctx.inputs, ctx.outputs[0]
    plan = _contraction(ctx.graph, ctx.node)
    value_type, floating = element_type(y.dtype), kind_of(y.dtype) == "float"
    zero = ir.Constant(value_type, 0.0 if floating else 0)
    multiply = b.fmul if floating else b.mul
    add = (lambda x, z: b.fadd(x, z, flags=REASSOCIATE)) if floating else b.add
    total = b.alloca(value_type)
    row_labels, column_label = plan.output[:-1], plan.output[-1:]
    columns = math.prod(plan.sizes[label] for label in column_label)

    def advance(offsets: list[ir.Value], label: str, coordinate: ir.Value) -> list[ir.Value]:
        return [b.add(offset, b.mul(coordinate, const_i64(strides[label]))) if strides.get(label) else offset
                for offset, strides in zip(offsets, plan.strides)]

    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        offsets = [const_i64(0)] * len(operands)
        for label, coordinate in zip(row_labels, unravel(b, row, [plan.sizes[label] for label in row_labels])):
            offsets = advance(offsets, label, coordinate)
        with for_range(b, 0, columns, name="column") as column:
            element_offsets = advance(offsets, column_label[0], column) if column_label else offsets
            b.store(zero, total)
            with ExitStack() as loops:
                for label in plan.summed:
                    step = loops.enter_context(for_range(b, 0, plan.sizes[label], name=f"sum_{label}"))
                    element_offsets = advance(element_offsets, label, step)
                values = [load(b, op.ptr, op.dtype, offset) for op, offset in zip(operands, element_offsets)]
                b.store(add(b.load(total, typ=value_type), functools.reduce(multiply, values)), total)
            store(b, b.load(total, typ=value_type), y.ptr, y.dtype, b.add(b.mul(row, const_i64(columns)), column))


register_kernel(KernelSpec(("Einsum",), _check, _rows, _emit))
