"""Data movement as box copies: Transpose, DepthToSpace, SpaceToDepth, Concat, Split, Slice, Expand,
Tile, Pad (every mode), Cast/CastLike, Gather, GatherElements, inference Dropout, and the Reshape
family when it needs a copy (the memory plan makes them views of their input otherwise).

A node is planned at compile time as boxes: target[t0 + sum(c_d * t_d)] = source[s0 + sum(c_d * s_d)]
for every coordinate c of the box, one work item per element. Source strides may be 0 (broadcast)
or negative (reversed slice); one source term may come from an indices tensor at run time
(Gather: negative indices count from the end, out-of-range ones are clamped so nothing is read
outside the data); a padded box maps each coordinate to the source by the pad mode, and reads the
pad value outside the source. Box dims whose strides nest are merged first (fewer div/mods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, register_gpu_kernel, \
    row_major
from compiler.ir.graph import Graph, Node

INDEX_DTYPES = ("int32", "int64")
PAD_MODES = ("constant", "reflect", "edge", "wrap")


class NotCompiled(Exception):
    """Raised by a plan for a node the gpu target cannot compile; the message says why."""


@dataclass(frozen=True)
class Gathered:
    """A run-time source term index * `stride`, the index read from input `indices` at the box
    position walked with strides `positions`; valid indices are [-axis_size, axis_size)."""

    indices: int
    axis_size: int
    stride: int
    positions: tuple[int, ...]


@dataclass(frozen=True)
class Padded:
    """Box dim d reads source coordinate c_d - before[d] of a dim of `sizes[d]`, mapped by `mode`;
    `fill` is the constant mode's value (None: read from input 2 at run time)."""

    before: tuple[int, ...]
    sizes: tuple[int, ...]
    mode: str
    fill: float | int | None


@dataclass(frozen=True)
class Box:
    source: int | None  # input index (None: every element is `fill`)
    target: int  # output index
    sizes: tuple[int, ...]
    source_strides: tuple[int, ...]
    target_strides: tuple[int, ...]
    source_offset: int = 0
    target_offset: int = 0
    gathered: Gathered | None = None
    padded: Padded | None = None
    fill: float | int = 0


def dense_box(shape, source: int = 0) -> Box:
    strides = row_major(shape)
    return Box(source, 0, tuple(shape), strides, strides)


def permuted_box(view, perm) -> Box:
    """Input 0 seen as shape `view`, axes permuted by `perm`, into output 0."""
    strides = row_major(view)
    sizes = tuple(view[axis] for axis in perm)
    return Box(0, 0, sizes, tuple(strides[axis] for axis in perm), row_major(sizes))


def _shape(graph: Graph, node: Node, index: int = 0) -> tuple[int, ...]:
    return graph.input_types(node)[index].shape


def _axis(node: Node, rank: int) -> int:
    axis = node.attrs.get("axis", 0)
    return axis + rank if axis < 0 else axis


def _constant_ints(graph: Graph, node: Node, index: int, what: str) -> list[int] | None:
    values = graph.input_values(node)
    if index >= len(values) or values[index] is None:
        return None
    array = graph.constant_value(values[index])
    if array is None:
        raise NotCompiled(f"{node.op_type} with run-time {what} is not compiled by the gpu target (they shape the copy)")
    return [int(x) for x in np.asarray(array).reshape(-1)]


def _transpose(graph: Graph, node: Node) -> list[Box]:
    shape = _shape(graph, node)
    return [permuted_box(shape, node.attrs.get("perm") or range(len(shape) - 1, -1, -1))]


def _depth_to_space(graph: Graph, node: Node) -> list[Box]:
    """ONNX defines both modes as reshape -> transpose -> reshape: the transpose of a 6-d view."""
    n, c, h, w = _shape(graph, node)
    block = node.attrs["blocksize"]
    if node.attrs.get("mode", "DCR") == "DCR":
        return [permuted_box((n, block, block, c // block ** 2, h, w), (0, 3, 4, 1, 5, 2))]
    return [permuted_box((n, c // block ** 2, block, block, h, w), (0, 1, 4, 2, 5, 3))]


def _space_to_depth(graph: Graph, node: Node) -> list[Box]:
    n, c, h, w = _shape(graph, node)
    block = node.attrs["blocksize"]
    perm = (0, 3, 5, 1, 2, 4) if node.attrs.get("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
    return [permuted_box((n, c, h // block, block, w // block, block), perm)]


def _concat(graph: Graph, node: Node) -> list[Box]:
    """One box per input, each landing at its running offset along the axis."""
    out_shape = node.outputs[0].shape
    axis, out_strides = _axis(node, len(out_shape)), row_major(out_shape)
    boxes, start = [], 0
    for index, input_type in enumerate(graph.input_types(node)):
        boxes.append(Box(index, 0, input_type.shape, row_major(input_type.shape), out_strides,
                         target_offset=start * out_strides[axis]))
        start += input_type.shape[axis]
    return boxes


def _split(graph: Graph, node: Node) -> list[Box]:
    """One box per output; the output types already hold the sizes."""
    shape = _shape(graph, node)
    axis, strides = _axis(node, len(shape)), row_major(shape)
    boxes, start = [], 0
    for index, output_type in enumerate(node.outputs):
        boxes.append(Box(0, index, output_type.shape, strides, row_major(output_type.shape),
                         source_offset=start * strides[axis]))
        start += output_type.shape[axis]
    return boxes


def _slice(graph: Graph, node: Node) -> list[Box]:
    """Python's slice.indices clamps starts/ends exactly as ONNX does, negative steps included."""
    shape = _shape(graph, node)
    starts = _constant_ints(graph, node, 1, "starts")
    ends = _constant_ints(graph, node, 2, "ends")
    axes = _constant_ints(graph, node, 3, "axes") or range(len(starts))
    steps = _constant_ints(graph, node, 4, "steps") or [1] * len(starts)
    if 0 in steps:
        raise NotCompiled("Slice with a step of 0 is invalid")
    first, step, sizes = [0] * len(shape), [1] * len(shape), list(shape)
    for axis, start, end, stride in zip(axes, starts, ends, steps):
        axis = axis + len(shape) if axis < 0 else axis
        picked = range(*slice(start, end, stride).indices(shape[axis]))
        first[axis], step[axis], sizes[axis] = picked.start, picked.step, len(picked)
    strides = row_major(shape)
    return [Box(0, 0, tuple(sizes), tuple(s * t for s, t in zip(step, strides)), row_major(sizes),
                source_offset=sum(f * t for f, t in zip(first, strides)))]


def _expand(graph: Graph, node: Node) -> list[Box]:
    out_shape = node.outputs[0].shape
    shape = (1,) * (len(out_shape) - len(_shape(graph, node))) + _shape(graph, node)
    strides = tuple(s if d == o else 0 for d, o, s in zip(shape, out_shape, row_major(shape)))
    return [Box(0, 0, out_shape, strides, row_major(out_shape))]


def _tile(graph: Graph, node: Node) -> list[Box]:
    """Each output axis of size repeats * n is seen as (repeats, n) with the repeat axis broadcasting."""
    shape, out_shape = _shape(graph, node), node.outputs[0].shape
    sizes, sources, targets = [], [], []
    for n, m, source, target in zip(shape, out_shape, row_major(shape), row_major(out_shape)):
        sizes += [m // n if n else 0, n]
        sources += [0, source]
        targets += [n * target, target]
    return [Box(0, 0, tuple(sizes), tuple(sources), tuple(targets))]


def _pad(graph: Graph, node: Node) -> list[Box]:
    shape, out_shape = _shape(graph, node), node.outputs[0].shape
    mode = node.attrs.get("mode", "constant")
    if mode not in PAD_MODES:
        raise NotCompiled(f"Pad mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    pads = _constant_ints(graph, node, 1, "pads")
    axes = _constant_ints(graph, node, 3, "axes") or range(len(shape))
    before = [0] * len(shape)
    for k, axis in enumerate(axes):
        before[axis + len(shape) if axis < 0 else axis] = pads[k]
    if mode != "constant" and any(n == 0 and o for n, o in zip(shape, out_shape)):
        raise NotCompiled(f"{mode} padding of an empty axis has nothing to repeat")
    values = graph.input_values(node)
    fill = node.attrs.get("value", 0)
    if len(values) > 2 and values[2] is not None:
        constant = graph.constant_value(values[2])
        fill = None if constant is None else np.asarray(constant).reshape(-1)[0].item()
    padded = Padded(tuple(before), tuple(shape), mode, fill)
    return [Box(0, 0, tuple(out_shape), row_major(shape), row_major(out_shape), padded=padded)]


def _copy(graph: Graph, node: Node) -> list[Box]:
    """Reshape family (a copy only where the memory plan cannot alias) and Cast: dense, converting."""
    return [dense_box(node.outputs[0].shape)]


def _dropout(graph: Graph, node: Node) -> list[Box]:
    """Inference Dropout: the output is the input and the mask all true. That holds when training mode
    is off (training_mode absent or a constant false; before opset 7, is_test set) or the ratio is a
    constant 0; training otherwise draws random numbers, which a compiled model does not reproduce."""
    if node.version is not None and node.version < 7 and not node.attrs.get("is_test", 0):
        raise NotCompiled(f"Dropout-{node.version} without is_test=1 runs in training mode, which draws random "
                          "numbers: not compiled by the gpu target (set is_test=1 for inference)")
    values = graph.input_values(node)
    training = values[2] if len(values) > 2 else None
    if training is not None:
        mode = graph.constant_value(training)
        ratio = graph.constant_value(values[1]) if values[1] is not None else None
        if mode is None or (np.any(mode) and (ratio is None or float(np.ravel(ratio)[0]) != 0.0)):
            raise NotCompiled("Dropout in training mode (or with training_mode computed at run time) draws random "
                              "numbers, which the gpu target does not generate (use training_mode=false)")
    shape = node.outputs[0].shape
    boxes = [dense_box(shape)]
    if len(node.outputs) > 1:
        boxes.append(Box(None, 1, tuple(shape), (0,) * len(shape), row_major(shape), fill=1))
    return boxes


def _gather_operands(graph: Graph, node: Node) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    data, indices = graph.input_types(node)
    axis = _axis(node, len(data.shape))
    if indices.dtype not in INDEX_DTYPES:
        raise NotCompiled(f"{node.op_type} with {indices.dtype} indices is not compiled by the gpu target")
    if data.shape[axis] == 0 and math.prod(indices.shape):
        raise NotCompiled(f"{node.op_type} from an empty axis has nothing to gather")
    return data.shape, indices.shape, axis


def _gather(graph: Graph, node: Node) -> list[Box]:
    """The output as (outer, indices, inner): each index picks one inner block of the data."""
    shape, indices_shape, axis = _gather_operands(graph, node)
    outer, inner, count = math.prod(shape[:axis]), math.prod(shape[axis + 1:]), math.prod(indices_shape)
    return [Box(0, 0, (outer, count, inner), (shape[axis] * inner, 0, 1), (count * inner, inner, 1),
                gathered=Gathered(1, shape[axis], inner, (0, 1, 0)))]


def _gather_elements(graph: Graph, node: Node) -> list[Box]:
    """The output walks the indices' shape; the indexed axis moves by the index read at the same position."""
    shape, indices_shape, axis = _gather_operands(graph, node)
    strides, positions = row_major(shape), row_major(indices_shape)
    sources = tuple(0 if a == axis else s for a, s in enumerate(strides))
    return [Box(0, 0, indices_shape, sources, positions, gathered=Gathered(1, shape[axis], strides[axis], positions))]


def _coalesced(box: Box) -> Box:
    """Size-1 dims dropped and neighbours whose strides all nest merged (padded boxes stay as they are)."""
    if box.padded is not None:
        return box
    positions = box.gathered.positions if box.gathered else (0,) * len(box.sizes)
    dims: list[tuple[int, int, int, int]] = []
    for dim in zip(box.sizes, box.source_strides, box.target_strides, positions):
        if dim[0] == 1:
            continue
        if dims and all(outer == inner * dim[0] for outer, inner in zip(dims[-1][1:], dim[1:])):
            dims[-1] = (dims[-1][0] * dim[0],) + dim[1:]
        else:
            dims.append(dim)
    dims = dims or [(1, 0, 0, 0)]
    sizes, sources, targets, positions = (tuple(column) for column in zip(*dims))
    gathered = Gathered(box.gathered.indices, box.gathered.axis_size, box.gathered.stride, positions) \
        if box.gathered else None
    return Box(box.source, box.target, sizes, sources, targets, box.source_offset, box.target_offset, gathered,
               fill=box.fill)


def _padded_source(lines: list[str], conditions: list[str], index: str, d: int, before: int, n: int,
                   mode: str) -> None:
    """Declare s<d>, the source coordinate of box coordinate c<d> under the pad mode."""
    lines.append(f"{index} s{d} = c{d} - {before};")
    if mode == "constant":
        conditions.append(f"s{d} >= 0 && s{d} < {n}")
    elif mode == "edge":
        lines.append(f"s{d} = clamp(s{d}, ({index})0, ({index}){n - 1});")
    elif mode == "wrap":
        lines.append(f"s{d} = ((s{d} % {n}) + {n}) % {n};")
    elif n == 1:  # reflect of a single element
        lines.append(f"s{d} = 0;")
    else:  # reflect: mirrored about both ends without repeating them, period 2(n - 1)
        period = 2 * (n - 1)
        lines.append(f"s{d} = (s{d} < 0 ? -s{d} : s{d}) % {period}; s{d} = s{d} < {n} ? s{d} : {period} - s{d};")


def _render(ctx: GpuContext, box: Box) -> KernelLaunch:
    box = _coalesced(box)
    target = ctx.output(box.target, "y")
    count = math.prod(box.sizes)
    target_terms = [str(box.target_offset)] if box.target_offset else []
    target_terms += [f"c{d} * {t}" for d, t in enumerate(box.target_strides) if t]
    values = {"count": count, "sizes": list(box.sizes), "target": f"y[{' + '.join(target_terms) or '0'}]"}
    if box.source is None:
        fill = ctx.dialect.store_value(ctx.dialect.literal(box.fill, target.dtype), target.dtype)
        return ctx.kernel("copy.cl.j2", [target], ctx.planner.linear(count), lines=[], value=fill, **values)
    source = ctx.input(box.source, "x")
    params = [source]
    lines: list[str] = []
    conditions: list[str] = []
    terms = [str(box.source_offset)] if box.source_offset else []
    index = ctx.index_type([source, target], count)
    for d, stride in enumerate(box.source_strides):
        if box.padded:
            _padded_source(lines, conditions, index, d, box.padded.before[d], box.padded.sizes[d], box.padded.mode)
            terms.append(f"s{d} * {stride}")
        elif stride:
            terms.append(f"c{d} * {stride}")
    if box.gathered:
        g = box.gathered
        params.append(ctx.input(g.indices, "indices"))
        position = " + ".join(f"c{d} * {p}" for d, p in enumerate(g.positions) if p) or "0"
        lines += [f"long g = indices[{position}];", f"g = clamp(g < 0 ? g + {g.axis_size} : g, 0L, {g.axis_size - 1}L);"]
        terms.append(f"({index})g * {g.stride}")
    lines.append(f"const {index} s = {' + '.join(terms) or '0'};")
    value = ctx.dialect.convert("x[s]", source.dtype, target.dtype)
    if conditions:
        if box.padded.fill is None:
            params.append(ctx.input(2, "value"))
            fill = "value[0]"
        else:
            fill = ctx.dialect.store_value(ctx.dialect.literal(box.padded.fill, target.dtype), target.dtype)
        value = f"({' && '.join(conditions)}) ? {value} : {fill}"
    return ctx.kernel("copy.cl.j2", params + [target], ctx.planner.linear(count), lines=lines, value=value, **values)


def _register(op_types: tuple[str, ...], plan) -> None:
    def check(graph: Graph, node: Node) -> str | None:
        try:
            plan(graph, node)
        except NotCompiled as reason:
            return str(reason)
        return None

    register_gpu_kernel(GpuKernelSpec(op_types, check,
                                      lambda ctx: [_render(ctx, box) for box in plan(ctx.graph, ctx.node)]))


_register(("Transpose",), _transpose)
_register(("DepthToSpace",), _depth_to_space)
_register(("SpaceToDepth",), _space_to_depth)
_register(("Concat",), _concat)
_register(("Split",), _split)
_register(("Slice",), _slice)
_register(("Expand",), _expand)
_register(("Tile",), _tile)
_register(("Pad",), _pad)
_register(("Cast", "CastLike", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"), _copy)
_register(("Dropout",), _dropout)
_register(("Gather",), _gather)
_register(("GatherElements",), _gather_elements)
