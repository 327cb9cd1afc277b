"""The static sizes of a Conv-like node (ConvGeometry): what every cpu conv form (direct, channel-vector,
pointwise GEMM, depthwise, integer) plans its work from. A 1-D conv is a 2-D one of height 1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from compiler.codegen.llvm.kernels.linear_algebra import GemmProblem, Layout
from compiler.ir.graph import Node
from compiler.ir.types import TensorType
from compiler.ops.fused_linear import weights_shape

COLUMN_TILE = 256  # output columns per work item, for wider rows
CHANNEL_BLOCKS = (16, 8, 4, 2, 1)  # output channels per work item of the integer convs (integer_linear.py)


def row_major(dims) -> tuple[int, ...]:
    """Element strides of a dense row-major array of these dims."""
    return tuple(math.prod(dims[axis + 1:]) for axis in range(len(dims)))


@dataclass(frozen=True)
class ConvGeometry:
    """Static sizes of one Conv node (at least 2 spatial dims); `pads` holds leading pads."""

    dtype: str
    batch: int
    channels: int
    out_channels: int
    group: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    out_size: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]

    @property
    def in_group(self) -> int:
        return self.channels // self.group

    @property
    def out_group(self) -> int:
        return self.out_channels // self.group

    @property
    def pointwise(self) -> bool:
        """A 1x1 kernel reading no padding: a GEMM (see gemm)."""
        return all(k == 1 for k in self.kernel) and not any(self.pads) and \
            all(o == (i - 1) // s + 1 for i, o, s in zip(self.in_size, self.out_size, self.strides))

    @property
    def channel_block(self) -> int:
        return next(size for size in CHANNEL_BLOCKS if self.out_group % size == 0)

    def shift(self, axis: int, tap: int) -> tuple[int, int]:
        """(stride phase, staged step) where kernel tap `tap` along `axis` reads, relative to output 0."""
        return divmod(tap * self.dilations[axis], self.strides[axis])[::-1]

    def phases(self, axis: int) -> list[int]:
        """The stride phases some kernel tap reads along `axis` (only those are staged)."""
        return sorted({self.shift(axis, tap)[0] for tap in range(self.kernel[axis])})

    @property
    def columns(self) -> int:
        return min(COLUMN_TILE, self.out_size[-1])

    @property
    def pitch(self) -> int:
        """Staged row length: the tile's columns plus the reach of the kernel's columns."""
        return self.columns + self.shift(-1, self.kernel[-1] - 1)[1]

    @property
    def phase_count(self) -> int:
        return len(self.phases(-2)) * len(self.phases(-1))

    def gemm(self, bias: bool) -> GemmProblem:
        """The pointwise form: per (image, group), out[m, s] = sum_c w[m, c] * x[c, s] (+ bias[m]) over the
        positions s (strided: position s reads the input at a tabled offset)."""
        cg, mg = self.in_group, self.out_group
        in_plane, out_plane = math.prod(self.in_size), math.prod(self.out_size)
        columns = None
        if any(s != 1 for s in self.strides):
            steps = [s * step for s, step in zip(self.strides, row_major(self.in_size))]
            columns = tuple(sum(int(c) * step for c, step in zip(coords, steps))
                            for coords in np.ndindex(*self.out_size))
        return GemmProblem(self.dtype, (self.batch, self.group), mg, out_plane, cg,
                           a=Layout((0, mg * cg), cg, 1),
                           b=Layout((self.channels * in_plane, cg * in_plane), in_plane, 1),
                           out=Layout((self.out_channels * out_plane, mg * out_plane), out_plane, 1),
                           c=Layout((0, mg), 1, 0) if bias else None, b_columns=columns)


def _leading_pads(node: Node, in_size, kernel, out_size, strides, dilations) -> tuple[int, ...]:
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return (0,) * len(in_size)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max(0, (o - 1) * s + (k - 1) * d + 1 - i)
                  for i, k, o, s, d in zip(in_size, kernel, out_size, strides, dilations)]
        return tuple(t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals)
    return tuple(node.attrs.get("pads", [0] * 2 * len(in_size))[:len(in_size)])


def conv_geometry(node: Node, x_type: TensorType, w_type: TensorType) -> ConvGeometry:
    """The geometry of a Conv-like `node` with input `x_type` and weight `w_type` (integer convs reuse it;
    a fused conv's weights may be transposed in blocks, [M / B, C/group * taps, B]: compiler/ops/fused_linear.py)."""
    in_size = x_type.shape[2:]
    out_channels, _, *kernel = weights_shape(node, w_type.shape)
    rank = len(in_size)
    out_size = node.outputs[0].shape[2:]
    strides = tuple(node.attrs.get("strides", [1] * rank))
    dilations = tuple(node.attrs.get("dilations", [1] * rank))
    pads = _leading_pads(node, in_size, kernel, out_size, strides, dilations)
    if rank == 1:  # a 2-D conv of height 1 (same memory layout)
        in_size, kernel, out_size = (1, *in_size), (1, *kernel), (1, *out_size)
        strides, dilations, pads = (1, *strides), (1, *dilations), (0, *pads)
    return ConvGeometry(x_type.dtype, x_type.shape[0], x_type.shape[1], out_channels,
                        int(node.attrs.get("group", 1)), tuple(in_size), tuple(kernel), tuple(out_size),
                        strides, dilations, pads)


@dataclass(frozen=True)
class ColumnRun:
    """Output columns [first, first + count) whose taps inside the image are the same kernel columns."""

    first: int
    count: int
    kernel_columns: tuple[int, ...]

    def full(self, g: ConvGeometry) -> bool:
        return len(self.kernel_columns) == g.kernel[1]


def column_runs(g: ConvGeometry) -> list[ColumnRun]:
    """The output columns of a 2-D conv in runs of equal kernel columns inside the image (none: left out)."""

    def inside(column: int) -> tuple[int, ...]:
        start = column * g.strides[1] - g.pads[1]
        return tuple(k for k in range(g.kernel[1]) if 0 <= start + k * g.dilations[1] < g.in_size[1])

    runs, first = [], 0
    for columns, members in groupby(range(g.out_size[1]), key=inside):
        count = len(list(members))
        if columns:
            runs.append(ColumnRun(first, count, columns))
        first += count
    return runs
