"""OneHot and EyeLike: outputs that are one value where a coordinate test holds, another elsewhere.

Both take their sizes from the static output type (OneHot's depth, EyeLike's shape), so the
depth input may even be computed at run time. A work item is one output row; the inner loop
runs over contiguous output elements.
"""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, convert, element_type, for_range, kind_of, load, store
from compiler.codegen.llvm.kernels.gather_nd import NUMERIC_KINDS
from compiler.codegen.llvm.kernels.math_functions import intrinsic
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node


# ----- OneHot ---------------------------------------------------------------------------------
def _one_hot_layout(graph: Graph, node: Node) -> tuple[int, int, int]:
    """(outer, depth, inner): the output seen as indices[:axis] x depth x indices[axis:]."""
    shape = node.outputs[0].shape
    axis = node.attrs.get("axis", -1) % len(shape)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _check_one_hot(graph: Graph, node: Node) -> str | None:
    indices, values = graph.input_types(node)[0], graph.input_types(node)[2]
    rank, axis = len(indices.shape) + 1, node.attrs.get("axis", -1)
    if not -rank <= axis < rank:
        return f"OneHot axis {axis} is out of range for an output of rank {rank}"
    if kind_of(indices.dtype) not in NUMERIC_KINDS:
        return f"OneHot with {indices.dtype} indices is not compiled by the cpu target"
    if values.shape != (2,):
        return f"OneHot values must be [off_value, on_value], not shape {values.shape}"
    return None


def _index(b: ir.IRBuilder, value: ir.Value, dtype: str, depth: int) -> ir.Value:
    """The index as i64 (floats truncated, as the spec's cast to int64), negatives counted from
    `depth`; a value that cannot be an index becomes -1, which matches no position."""
    kind = kind_of(dtype)
    if kind == "float":
        whole = intrinsic(b, "trunc", convert(b, value, dtype, "float64") if dtype == "float16" else value)
        usable = b.fcmp_ordered("<", intrinsic(b, "fabs", whole), ir.Constant(whole.type, float(depth + 1)))
        value = b.select(usable, b.fptosi(whole, element_type("int64")), const_i64(-1))
    else:
        value = convert(b, value, dtype, "int64")
    if kind == "unsigned":  # never negative: a huge uint64 reads as negative i64 and matches nothing
        return value
    wrapped = b.add(value, const_i64(depth))
    return b.select(b.icmp_signed("<", value, const_i64(0)), wrapped, value)


def _emit_one_hot(ctx: KernelContext) -> None:
    """Row (o, d): y[o, d, i] = on if index[o, i] (wrapped) == d else off."""
    b, indices, values, y = ctx.builder, ctx.inputs[0], ctx.inputs[2], ctx.outputs[0]
    outer, depth, inner = _one_hot_layout(ctx.graph, ctx.node)
    off, on = (load(b, values.ptr, values.dtype, const_i64(i)) for i in (0, 1))
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        o, d = b.udiv(row, const_i64(depth)), b.urem(row, const_i64(depth))
        source, target = b.mul(o, const_i64(inner)), b.mul(row, const_i64(inner))
        with for_range(b, 0, inner, name="i") as i:
            index = _index(b, load(b, indices.ptr, indices.dtype, b.add(source, i)), indices.dtype, depth)
            store(b, b.select(b.icmp_signed("==", index, d), on, off), y.ptr, y.dtype, b.add(target, i))


def _one_hot_items(graph: Graph, node: Node) -> int:
    outer, depth, inner = _one_hot_layout(graph, node)
    return outer * depth if inner else 0


register_kernel(KernelSpec(("OneHot",), _check_one_hot, _one_hot_items, _emit_one_hot))


# ----- EyeLike --------------------------------------------------------------------------------
def _check_eye_like(graph: Graph, node: Node) -> str | None:
    output = node.outputs[0]
    if kind_of(output.dtype) not in NUMERIC_KINDS + ("bool",):
        return f"EyeLike of {output.dtype} is not compiled by the cpu target"
    return None if len(output.shape) == 2 else f"EyeLike makes 2-D outputs, not shape {output.shape}"


def _emit_eye_like(ctx: KernelContext) -> None:
    """Row r: y[r, c] = 1 where c - r == k, else 0."""
    b, y = ctx.builder, ctx.outputs[0]
    columns, k = y.shape[1], ctx.node.attrs.get("k", 0)
    value_type, floating = element_type(y.dtype), kind_of(y.dtype) == "float"
    one, zero = (ir.Constant(value_type, float(v) if floating else v) for v in (1, 0))
    with for_range(b, ctx.begin, ctx.end, name="row") as row:
        diagonal = b.add(row, const_i64(k))
        with for_range(b, 0, columns, name="column") as column:
            value = b.select(b.icmp_signed("==", column, diagonal), one, zero)
            store(b, value, y.ptr, y.dtype, b.add(b.mul(row, const_i64(columns)), column))


register_kernel(KernelSpec(("EyeLike",), _check_eye_like, lambda graph, node: node.outputs[0].shape[0], _emit_eye_like))
