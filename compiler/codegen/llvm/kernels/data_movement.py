"""Data movement ops as strided box copies: Concat, Split, Transpose, Slice, Expand, Tile,
DepthToSpace, SpaceToDepth, ConstantOfShape (planned in compiler/codegen/copy_plan.py, as the gpu
target plans them), Pad, Cast/CastLike/BitCast, and the ops whose result is known at compile time
(Shape, Size, Range), which the constant folder usually removes first.

Pad is cut into affine runs per axis (a run of pad values covers the inner axes in one box), so
every box is a plain loop nest.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np

from compiler.codegen.copy_plan import MOVES, Copy, NotCompiled, constant_ints, dense_copy, input_shape
from compiler.codegen.llvm.kernels.narrow_types import ROUND_MODES, cast
from compiler.codegen.llvm.kernels.strided_copy import Convert, register_copy_kernel
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node
from compiler.ir.types import numpy_dtype
from compiler.ops.registry import lookup

MAX_PAD_BOXES = 256  # each box is a loop nest of code: reflect/wrap pads many times the input's width are refused


class _Run(NamedTuple):
    """Output positions [start, start + length) read input positions source + k * step (source None: the pad value)."""

    start: int
    length: int
    source: int | None
    step: int


def _pad_source(i: int, n: int, mode: str) -> int | None:
    """The input position feeding input-relative position i (outside [0, n) in the pad region)."""
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "edge":
        return min(max(i, 0), n - 1)
    if mode == "wrap":
        return i % n
    period = 2 * (n - 1)  # reflect
    i = i % period if period else 0
    return i if i < n else period - i


def _extended(last: _Run | None, source: int | None) -> _Run | None:
    """`last` grown by one position reading `source`, when that keeps it affine; else None."""
    if last is None or (source is None) != (last.source is None):
        return None
    if source is not None and last.length == 1:
        return last._replace(length=2, step=source - last.source)
    if source is None or source == last.source + last.step * last.length:
        return last._replace(length=last.length + 1)
    return None


def _pad_runs(n: int, before: int, after: int, mode: str) -> list[_Run]:
    """Split one padded axis into affine runs (negative pads crop)."""
    runs: list[_Run] = []
    position, size = 0, n + before + after
    while position < size:
        i = position - before
        if 0 <= i < n:
            length = min(n - i, size - position)
            runs.append(_Run(position, length, i, 1))
            position += length
            continue
        source = _pad_source(i, n, mode)
        grown = _extended(runs[-1] if runs else None, source)
        if grown:
            runs[-1] = grown
        else:
            runs.append(_Run(position, 1, source, 1))
        position += 1
    return runs


def _pad(graph: Graph, node: Node) -> list[Copy]:
    """The product of every axis' runs; a pad-value run covers all inner axes in one box."""
    shape, out_shape = input_shape(graph, node), node.outputs[0].shape
    mode = node.attrs.get("mode", "constant")
    pads = constant_ints(graph, node, 1, "pads", attr="pads")
    axes = constant_ints(graph, node, 3, "axes") or range(len(shape))
    before, after = [0] * len(shape), [0] * len(shape)
    for k, axis in enumerate(axes):
        axis = axis + len(shape) if axis < 0 else axis
        before[axis], after[axis] = pads[k], pads[k + len(axes)]
    if mode != "constant" and any(n == 0 and (b or a) for n, b, a in zip(shape, before, after)):
        raise NotCompiled(f"{mode} padding of an empty axis has nothing to repeat")
    runs = [_pad_runs(n, b, a, mode) for n, b, a in zip(shape, before, after)]
    values = graph.input_values(node)
    dtype = numpy_dtype(node.outputs[0].dtype)
    fill = 2 if len(values) > 2 and values[2] is not None else np.array([node.attrs.get("value", 0)], dtype)
    in_strides, out_strides = dense_strides(shape), dense_strides(out_shape)
    copies: list[Copy] = []

    def visit(axis: int, sizes: tuple, sources: tuple, source_offset: int, target_offset: int) -> None:
        if axis == len(shape):
            copies.append(Copy(0, 0, sizes, sources, out_strides, source_offset, target_offset))
            return
        for run in runs[axis]:
            offset = target_offset + run.start * out_strides[axis]
            if run.source is None:
                box = sizes + (run.length,) + tuple(out_shape[axis + 1:])
                copies.append(Copy(fill, 0, box, (0,) * len(box), out_strides, 0, offset))
            else:
                visit(axis + 1, sizes + (run.length,), sources + (run.step * in_strides[axis],),
                      source_offset + run.source * in_strides[axis], offset)

    visit(0, (), (), 0, 0)
    if len(copies) > MAX_PAD_BOXES:
        raise NotCompiled(f"{mode} padding this much wider than the input makes {len(copies)} pieces "
                          f"(the cpu target compiles up to {MAX_PAD_BOXES})")
    return copies


def _cast(graph: Graph, node: Node) -> list[Copy]:
    """A dense copy that converts when the source and target dtypes differ (see _cast_conversion)."""
    round_mode = node.attrs.get("round_mode", "up")
    if round_mode not in ROUND_MODES:
        raise NotCompiled(f"{node.op_type} with round_mode {round_mode!r} is not compiled by the cpu target "
                          f"(it handles {', '.join(ROUND_MODES)})")
    return [dense_copy(0, node.outputs[0].shape)]


def _cast_conversion(node: Node) -> Convert:
    """Cast's saturate and round_mode."""
    return partial(cast, saturate=bool(node.attrs.get("saturate", 1)), round_mode=node.attrs.get("round_mode", "up"))


def _bit_cast(graph: Graph, node: Node) -> list[Copy]:
    """The bits move unchanged (no conversion); ONNX requires both dtypes to have the same width."""
    source, target = graph.input_types(node)[0].dtype, node.outputs[0].dtype
    if numpy_dtype(source).itemsize != numpy_dtype(target).itemsize:
        raise NotCompiled(f"BitCast from {source} to {target} changes the element width (ONNX requires equal widths)")
    return [dense_copy(0, node.outputs[0].shape)]


def _evaluated(graph: Graph, node: Node) -> list[Copy]:
    """Shape, Size and Range: run the op's reference kernel now and bake the result into the kernel.

    Shape and Size only look at their input's static shape, so a zero-strided stand-in replaces it.
    """
    values = graph.input_values(node)
    arrays = [graph.constant_value(v) for v in values]
    if node.op_type == "Range" and any(a is None for a in arrays):
        raise NotCompiled("Range with run-time start/limit/delta is not compiled by the cpu target")
    types = graph.input_types(node)
    arrays = [np.broadcast_to(np.zeros((), numpy_dtype(t.dtype)), t.shape) if a is None else a for a, t in zip(arrays, types)]
    kernel = lookup(node.op_type).kernel(node, types, [v is not None for v in values])
    result = np.asarray(kernel(arrays)[0], numpy_dtype(node.outputs[0].dtype))
    if result.shape != tuple(node.outputs[0].shape):
        raise NotCompiled(f"{node.op_type} computed shape {result.shape}, its type says {node.outputs[0].shape}")
    return [dense_copy(result, result.shape)]


for op_types, plan in MOVES.items():
    register_copy_kernel(op_types, plan)
register_copy_kernel(("Pad",), _pad)
register_copy_kernel(("Cast", "CastLike"), _cast, _cast_conversion)
register_copy_kernel(("BitCast",), _bit_cast, lambda node: None)
register_copy_kernel(("Shape", "Size", "Range"), _evaluated)
