"""Data movement ops as strided box copies: Concat, Split, Transpose, Slice, Expand, Tile, Pad,
DepthToSpace, SpaceToDepth, Cast/CastLike/BitCast, and the ops whose result is known at compile time
(Shape, Size, ConstantOfShape, Range), which the constant folder usually removes first.

Every plan works from the node's static types; shape-like operands (slice bounds, pads) must be
constants because they decide the loop nest. The output types already resolve split sizes,
expand shapes and tile repeats, so those inputs may even be computed at run time.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import NamedTuple

import numpy as np

from compiler.codegen.llvm.kernels.narrow_types import ROUND_MODES, cast
from compiler.codegen.llvm.kernels.strided_copy import (
    Copy, NotCompiled, dense_copy, dense_strides, permuted_copy, register_copy_kernel)
from compiler.ir.graph import Graph, Node
from compiler.ir.types import numpy_dtype
from compiler.ops.registry import lookup

MAX_PAD_BOXES = 256  # each box is a loop nest of code: reflect/wrap pads many times the input's width are refused


def _shape(graph: Graph, node: Node, index: int = 0) -> tuple[int, ...]:
    return graph.input_types(node)[index].shape


def _axis(node: Node, rank: int, default: int = 0) -> int:
    axis = node.attrs.get("axis", default)
    return axis + rank if axis < 0 else axis


def _constant_ints(graph: Graph, node: Node, index: int, what: str, attr: str | None = None) -> list[int] | None:
    """Ints of constant input `index` (or, in older opsets, attribute `attr`); None when absent."""
    values = graph.input_values(node)
    if index < len(values) and values[index] is not None:
        array = graph.constant_value(values[index])
        if array is None:
            raise NotCompiled(f"{node.op_type} with run-time {what} is not compiled by the cpu target (they shape the loops)")
        return [int(x) for x in np.asarray(array).reshape(-1)]
    return node.attrs.get(attr) if attr else None


def _transpose(graph: Graph, node: Node) -> list[Copy]:
    shape = _shape(graph, node)
    return [permuted_copy(shape, node.attrs.get("perm") or range(len(shape) - 1, -1, -1))]


def _depth_to_space(graph: Graph, node: Node) -> list[Copy]:
    """ONNX defines both modes as reshape -> transpose -> reshape: the transpose of a 6-d view."""
    n, c, h, w = _shape(graph, node)
    block = node.attrs["blocksize"]
    if node.attrs.get("mode", "DCR") == "DCR":
        return [permuted_copy((n, block, block, c // block ** 2, h, w), (0, 3, 4, 1, 5, 2))]
    return [permuted_copy((n, c // block ** 2, block, block, h, w), (0, 1, 4, 2, 5, 3))]


def _space_to_depth(graph: Graph, node: Node) -> list[Copy]:
    n, c, h, w = _shape(graph, node)
    block = node.attrs["blocksize"]
    perm = (0, 3, 5, 1, 2, 4) if node.attrs.get("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
    return [permuted_copy((n, c, h // block, block, w // block, block), perm)]


def _concat(graph: Graph, node: Node) -> list[Copy]:
    """One box per input, each landing at its running offset along the axis."""
    out_shape = node.outputs[0].shape
    axis, out_strides = _axis(node, len(out_shape)), dense_strides(out_shape)
    copies, start = [], 0
    for index, input_type in enumerate(graph.input_types(node)):
        copies.append(Copy(index, 0, input_type.shape, dense_strides(input_type.shape), out_strides,
                           target_offset=start * out_strides[axis]))
        start += input_type.shape[axis]
    return copies


def _split(graph: Graph, node: Node) -> list[Copy]:
    """One box per output; the output types already hold the sizes (split input, attribute or num_outputs)."""
    shape = _shape(graph, node)
    axis, strides = _axis(node, len(shape)), dense_strides(shape)
    copies, start = [], 0
    for index, output_type in enumerate(node.outputs):
        copies.append(Copy(0, index, output_type.shape, strides, dense_strides(output_type.shape),
                           source_offset=start * strides[axis]))
        start += output_type.shape[axis]
    return copies


def _slice(graph: Graph, node: Node) -> list[Copy]:
    """Python's slice.indices clamps starts/ends exactly as ONNX does, negative steps included."""
    shape = _shape(graph, node)
    starts = _constant_ints(graph, node, 1, "starts", attr="starts")
    ends = _constant_ints(graph, node, 2, "ends", attr="ends")
    axes = _constant_ints(graph, node, 3, "axes", attr="axes") or range(len(starts))
    steps = _constant_ints(graph, node, 4, "steps") or [1] * len(starts)
    first, step, sizes = [0] * len(shape), [1] * len(shape), list(shape)
    for axis, start, end, stride in zip(axes, starts, ends, steps):
        axis = axis + len(shape) if axis < 0 else axis
        picked = range(*slice(start, end, stride).indices(shape[axis]))
        first[axis], step[axis], sizes[axis] = picked.start, picked.step, len(picked)
    strides = dense_strides(shape)
    return [Copy(0, 0, tuple(sizes), tuple(s * t for s, t in zip(step, strides)), dense_strides(sizes),
                 source_offset=sum(f * t for f, t in zip(first, strides)))]


def _expand(graph: Graph, node: Node) -> list[Copy]:
    out_shape = node.outputs[0].shape
    shape = (1,) * (len(out_shape) - len(_shape(graph, node))) + _shape(graph, node)
    strides = tuple(s if d == o else 0 for d, o, s in zip(shape, out_shape, dense_strides(shape)))
    return [Copy(0, 0, out_shape, strides, dense_strides(out_shape))]


def _tile(graph: Graph, node: Node) -> list[Copy]:
    """Each output axis of size repeats*n is seen as (repeats, n) with the repeat axis broadcasting."""
    shape, out_shape = _shape(graph, node), node.outputs[0].shape
    sizes, sources, targets = [], [], []
    for n, m, source, target in zip(shape, out_shape, dense_strides(shape), dense_strides(out_shape)):
        sizes += [m // n if n else 0, n]
        sources += [0, source]
        targets += [n * target, target]
    return [Copy(0, 0, tuple(sizes), tuple(sources), tuple(targets))]


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
    shape, out_shape = _shape(graph, node), node.outputs[0].shape
    mode = node.attrs.get("mode", "constant")
    pads = _constant_ints(graph, node, 1, "pads", attr="pads")
    axes = _constant_ints(graph, node, 3, "axes") or range(len(shape))
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
    """The box copy converts when the source and target dtypes differ, with Cast's saturate and round_mode."""
    round_mode = node.attrs.get("round_mode", "up")
    if round_mode not in ROUND_MODES:
        raise NotCompiled(f"{node.op_type} with round_mode {round_mode!r} is not compiled by the cpu target "
                          f"(it handles {', '.join(ROUND_MODES)})")
    convert = partial(cast, saturate=bool(node.attrs.get("saturate", 1)), round_mode=round_mode)
    return [replace(dense_copy(0, node.outputs[0].shape), convert=convert)]


def _bit_cast(graph: Graph, node: Node) -> list[Copy]:
    """The bits move unchanged; ONNX requires both dtypes to have the same width."""
    source, target = graph.input_types(node)[0].dtype, node.outputs[0].dtype
    if numpy_dtype(source).itemsize != numpy_dtype(target).itemsize:
        raise NotCompiled(f"BitCast from {source} to {target} changes the element width (ONNX requires equal widths)")
    return [replace(dense_copy(0, node.outputs[0].shape), convert=None)]


def _constant_of_shape(graph: Graph, node: Node) -> list[Copy]:
    """A broadcast of the one-element value: no need to bake the whole (maybe huge) tensor."""
    shape = node.outputs[0].shape
    value = np.asarray(node.attrs.get("value", np.zeros(1, np.float32))).reshape(1)
    return [Copy(value, 0, shape, (0,) * len(shape), dense_strides(shape))]


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


register_copy_kernel(("Transpose",), _transpose)
register_copy_kernel(("DepthToSpace",), _depth_to_space)
register_copy_kernel(("SpaceToDepth",), _space_to_depth)
register_copy_kernel(("Concat",), _concat)
register_copy_kernel(("Split",), _split)
register_copy_kernel(("Slice",), _slice)
register_copy_kernel(("Expand",), _expand)
register_copy_kernel(("Tile",), _tile)
register_copy_kernel(("Pad",), _pad)
register_copy_kernel(("Cast", "CastLike"), _cast)
register_copy_kernel(("BitCast",), _bit_cast)
register_copy_kernel(("ConstantOfShape",), _constant_of_shape)
register_copy_kernel(("Shape", "Size", "Range"), _evaluated)
