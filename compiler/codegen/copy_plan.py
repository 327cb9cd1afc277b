"""Data movement planned as strided box copies, for every target.

A data-movement node is planned at compile time as a list of `Copy` boxes. A box moves
target[t0 + sum(i_d * t_d)] = source[s0 + sum(i_d * s_d)] for every coordinate i of the box;
source strides may be 0 (broadcast) or negative (reversed slice), and one source term may be
read at run time from an indices tensor (Gather). The plans here only do index arithmetic over
the node's static types; each target turns boxes into its own code (cpu: LLVM loop nests,
compiler/codegen/llvm/kernels/strided_copy.py; gpu: one OpenCL work item per element,
compiler/codegen/opencl/kernels/data_movement.py).

Shape-like operands (slice bounds) must be constants because they decide the box; the output
types already resolve split sizes, expand shapes and tile repeats, so those inputs may even be
computed at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np

from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node

INDEX_DTYPES = ("int32", "int64")


class NotCompiled(Exception):
    """Raised by a plan for a node its target cannot compile; the message says why."""


@dataclass(frozen=True)
class Gathered:
    """A run-time source term: index * `stride`, index read from input `indices`.

    The indices element read walks the box with strides `positions`. Negative indices count
    from `axis_size`; indices still outside [0, axis_size) are clamped into it, so a bad index
    never reads outside the source (ONNX leaves out-of-range indices undefined).
    """

    indices: int
    axis_size: int
    stride: int
    positions: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Copy:
    """Copy the box `sizes` from `source` (an input index, or an array the kernel holds) into output `target`."""

    source: int | np.ndarray
    target: int
    sizes: tuple[int, ...]
    source_strides: tuple[int, ...]
    target_strides: tuple[int, ...]
    source_offset: int = 0
    target_offset: int = 0
    gathered: Gathered | None = None


Plan = Callable[[Graph, Node], list[Copy]]
"""(graph, node) -> the boxes computing the node; raises NotCompiled when it cannot."""


def plan_problem(plan: Plan, graph: Graph, node: Node) -> str | None:
    """Why `plan` cannot compile `node` (its NotCompiled message), or None when it can."""
    try:
        plan(graph, node)
    except NotCompiled as reason:
        return str(reason)
    return None


def dense_copy(source: int | np.ndarray, shape: Sequence[int]) -> Copy:
    """A whole dense tensor of `shape` into output 0."""
    strides = dense_strides(shape)
    return Copy(source, 0, tuple(shape), strides, strides)


def permuted_copy(view: Sequence[int], perm: Sequence[int]) -> Copy:
    """Input 0 seen as shape `view`, axes permuted by `perm`, into output 0."""
    strides = dense_strides(view)
    sizes = tuple(view[axis] for axis in perm)
    return Copy(0, 0, sizes, tuple(strides[axis] for axis in perm), dense_strides(sizes))


class Dim(NamedTuple):
    """One box dim: its size and the strides of the source, the target and the indices read."""

    size: int
    source: int
    target: int
    position: int


def coalesced_dims(copy: Copy) -> tuple[Dim, ...]:
    """The box's dims with size-1 dims dropped and neighbours whose strides all nest
    (outer = inner * inner size) merged, so fewer coordinates are decoded; at least one dim."""
    positions = copy.gathered.positions if copy.gathered else (0,) * len(copy.sizes)
    dims: list[Dim] = []
    for dim in map(Dim, copy.sizes, copy.source_strides, copy.target_strides, positions):
        if dim.size == 1:
            continue
        if dims and all(outer == inner * dim.size for outer, inner in zip(dims[-1][1:], dim[1:])):
            dims[-1] = dim._replace(size=dims[-1].size * dim.size)
        else:
            dims.append(dim)
    return tuple(dims) or (Dim(1, 0, 0, 0),)


def input_shape(graph: Graph, node: Node, index: int = 0) -> tuple[int, ...]:
    return graph.input_types(node)[index].shape


def axis_of(node: Node, rank: int) -> int:
    axis = node.attrs.get("axis", 0)
    return axis + rank if axis < 0 else axis


def constant_ints(graph: Graph, node: Node, index: int, what: str, attr: str | None = None) -> list[int] | None:
    """Ints of constant input `index` (or, in older opsets, attribute `attr`); None when absent."""
    values = graph.input_values(node)
    if index < len(values) and values[index] is not None:
        array = graph.constant_value(values[index])
        if array is None:
            raise NotCompiled(f"{node.op_type} with run-time {what} is not compiled (they shape the copy): "
                              "make them constants")
        return [int(x) for x in np.asarray(array).reshape(-1)]
    return node.attrs.get(attr) if attr else None


def transpose(graph: Graph, node: Node) -> list[Copy]:
    shape = input_shape(graph, node)
    return [permuted_copy(shape, node.attrs.get("perm") or range(len(shape) - 1, -1, -1))]


def depth_to_space(graph: Graph, node: Node) -> list[Copy]:
    """ONNX defines both modes as reshape -> transpose -> reshape: the transpose of a 6-d view."""
    n, c, h, w = input_shape(graph, node)
    block = node.attrs["blocksize"]
    if node.attrs.get("mode", "DCR") == "DCR":
        return [permuted_copy((n, block, block, c // block ** 2, h, w), (0, 3, 4, 1, 5, 2))]
    return [permuted_copy((n, c // block ** 2, block, block, h, w), (0, 1, 4, 2, 5, 3))]


def space_to_depth(graph: Graph, node: Node) -> list[Copy]:
    n, c, h, w = input_shape(graph, node)
    block = node.attrs["blocksize"]
    perm = (0, 3, 5, 1, 2, 4) if node.attrs.get("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
    return [permuted_copy((n, c, h // block, block, w // block, block), perm)]


def concat(graph: Graph, node: Node) -> list[Copy]:
    """One box per input, each landing at its running offset along the axis."""
    out_shape = node.outputs[0].shape
    axis, out_strides = axis_of(node, len(out_shape)), dense_strides(out_shape)
    copies, start = [], 0
    for index, input_type in enumerate(graph.input_types(node)):
        copies.append(Copy(index, 0, input_type.shape, dense_strides(input_type.shape), out_strides,
                           target_offset=start * out_strides[axis]))
        start += input_type.shape[axis]
    return copies


def split(graph: Graph, node: Node) -> list[Copy]:
    """One box per output; the output types already hold the sizes (split input, attribute or num_outputs)."""
    shape = input_shape(graph, node)
    axis, strides = axis_of(node, len(shape)), dense_strides(shape)
    copies, start = [], 0
    for index, output_type in enumerate(node.outputs):
        copies.append(Copy(0, index, output_type.shape, strides, dense_strides(output_type.shape),
                           source_offset=start * strides[axis]))
        start += output_type.shape[axis]
    return copies


def slice_(graph: Graph, node: Node) -> list[Copy]:
    """Python's slice.indices clamps starts/ends exactly as ONNX does, negative steps included."""
    shape = input_shape(graph, node)
    starts = constant_ints(graph, node, 1, "starts", attr="starts")
    ends = constant_ints(graph, node, 2, "ends", attr="ends")
    axes = constant_ints(graph, node, 3, "axes", attr="axes") or range(len(starts))
    steps = constant_ints(graph, node, 4, "steps") or [1] * len(starts)
    if 0 in steps:
        raise NotCompiled("Slice with a step of 0 is invalid")
    first, step, sizes = [0] * len(shape), [1] * len(shape), list(shape)
    for axis, start, end, stride in zip(axes, starts, ends, steps):
        axis = axis + len(shape) if axis < 0 else axis
        picked = range(*slice(start, end, stride).indices(shape[axis]))
        first[axis], step[axis], sizes[axis] = picked.start, picked.step, len(picked)
    strides = dense_strides(shape)
    return [Copy(0, 0, tuple(sizes), tuple(s * t for s, t in zip(step, strides)), dense_strides(sizes),
                 source_offset=sum(f * t for f, t in zip(first, strides)))]


def expand(graph: Graph, node: Node) -> list[Copy]:
    out_shape = node.outputs[0].shape
    shape = (1,) * (len(out_shape) - len(input_shape(graph, node))) + input_shape(graph, node)
    strides = tuple(s if d == o else 0 for d, o, s in zip(shape, out_shape, dense_strides(shape)))
    return [Copy(0, 0, out_shape, strides, dense_strides(out_shape))]


def tile(graph: Graph, node: Node) -> list[Copy]:
    """Each output axis of size repeats*n is seen as (repeats, n) with the repeat axis broadcasting."""
    shape, out_shape = input_shape(graph, node), node.outputs[0].shape
    sizes, sources, targets = [], [], []
    for n, m, source, target in zip(shape, out_shape, dense_strides(shape), dense_strides(out_shape)):
        sizes += [m // n if n else 0, n]
        sources += [0, source]
        targets += [n * target, target]
    return [Copy(0, 0, tuple(sizes), tuple(sources), tuple(targets))]


def constant_of_shape(graph: Graph, node: Node) -> list[Copy]:
    """A broadcast of the one-element value: no need to hold the whole (maybe huge) tensor."""
    shape = node.outputs[0].shape
    value = np.asarray(node.attrs.get("value", np.zeros(1, np.float32))).reshape(1)
    return [Copy(value, 0, shape, (0,) * len(shape), dense_strides(shape))]


def _gather_operands(graph: Graph, node: Node) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(data shape, indices shape, axis) after checking the indices can be read."""
    data, indices = graph.input_types(node)
    axis = axis_of(node, len(data.shape))
    if indices.dtype not in INDEX_DTYPES:
        raise NotCompiled(f"{node.op_type} with {indices.dtype} indices is not compiled (indices must be "
                          f"{' or '.join(INDEX_DTYPES)})")
    if data.shape[axis] == 0 and math.prod(indices.shape):
        raise NotCompiled(f"{node.op_type} from an empty axis has nothing to gather")
    return data.shape, indices.shape, axis


def gather(graph: Graph, node: Node) -> list[Copy]:
    """The output as (outer, indices, inner): each index picks one inner block of the data."""
    shape, indices_shape, axis = _gather_operands(graph, node)
    outer, inner, count = math.prod(shape[:axis]), math.prod(shape[axis + 1:]), math.prod(indices_shape)
    return [Copy(0, 0, (outer, count, inner), (shape[axis] * inner, 0, 1), (count * inner, inner, 1),
                 gathered=Gathered(1, shape[axis], inner, (0, 1, 0)))]


def gather_elements(graph: Graph, node: Node) -> list[Copy]:
    """The output walks the indices' shape; the indexed axis moves by the index read at the same position."""
    shape, indices_shape, axis = _gather_operands(graph, node)
    strides, positions = dense_strides(shape), dense_strides(indices_shape)
    sources = tuple(0 if a == axis else s for a, s in enumerate(strides))
    return [Copy(0, 0, indices_shape, sources, positions,
                 gathered=Gathered(1, shape[axis], strides[axis], positions))]


MOVES: dict[tuple[str, ...], Plan] = {
    ("Transpose",): transpose, ("DepthToSpace",): depth_to_space, ("SpaceToDepth",): space_to_depth,
    ("Concat",): concat, ("Split",): split, ("Slice",): slice_, ("Expand",): expand, ("Tile",): tile,
    ("ConstantOfShape",): constant_of_shape,
}
"""Plans every target compiles the same way, by the op types they serve."""

GATHERS: dict[tuple[str, ...], Plan] = {("Gather",): gather, ("GatherElements",): gather_elements}
"""The same for the ops that read a source term from an indices tensor at run time."""
