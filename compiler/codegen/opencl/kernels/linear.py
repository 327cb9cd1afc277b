"""MatMul, Gemm and Conv on the tiled GEMM template (gemm.cl.j2), or the matrix-vector one (gemv.cl.j2)
for products of a few rows.

MatMul and Gemm describe A, B and Y by strides (transposes are strides too; batch dims broadcast
with stride 0), so A and B stage into local memory along whichever dim is contiguous, as float4
vectors when rows are whole vectors. Conv is an implicit GEMM per group: A is the weights
(out channels x in channels * taps), B the input seen as im2col, computed on the fly with the
padding read as 0 (no im2col buffer), and the columns run over images * output positions; any
number of spatial dims, strides, dilations, pads (auto_pad too) and groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.codegen.opencl.dialect import SINGLE
from compiler.codegen.opencl.kernels.epilogue import epilogue
from compiler.codegen.opencl.kernels.registry import (GpuContext, GpuKernelSpec, KernelLaunch, Tensor, dtype_problem,
                                                      register_gpu_kernel)
from compiler.codegen.opencl.launch import round_up
from compiler.codegen.opencl.steps import steps_problem
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ir.types import TensorType
from compiler.ops.fused_linear import BASES, epilogue_steps, epilogue_types, weights_shape
from compiler.ops.pool_geometry import AUTO_PADS


def _operand(ctx: GpuContext, tensor: Tensor, row: str, rs: int, column: str, cs: int) -> dict:
    """A (rows m, depth k) or B (depth k, columns n) described by strides: its load, whether k is its
    contiguous dim, and its float4 load along a contiguous column dim (the template decides whether
    the sizes allow it)."""
    index = " + ".join(["base"] + [f"{var} * {stride}" for var, stride in ((row, rs), (column, cs)) if stride])
    return {"ctype": tensor.ctype, "load": ctx.dialect.load(tensor.name, index, tensor.dtype),
            "k_fast": (column == "k" and cs == 1) or (row == "k" and rs == 1 and cs != 1),
            "vector": cs == 1 and tensor.dtype == "float32",
            "vector_load": f"vload4(0, {tensor.name} + {tensor.name}_batch + {row} * {rs} + {column})"}


def _batch_strides(shape, batch) -> list[int]:
    """Strides of an operand's batch dims walking the output batch dims (0 where it broadcasts)."""
    own = (1,) * (len(batch) - (len(shape) - 2)) + tuple(shape[:-2])
    strides = (0,) * (len(batch) - (len(shape) - 2)) + dense_strides(shape)[:-2]
    return [0 if size == 1 and want != 1 else stride for size, want, stride in zip(own, batch, strides)]


def _base(coordinates: list[int]) -> str:
    return " + ".join(f"q{d} * {s}" for d, s in enumerate(coordinates) if s) or "0"


GEMV_ROWS = 4  # products with this many rows or fewer run the matrix-vector kernel (gemv.cl.j2)


def _gemm_kernel(ctx: GpuContext, params: list[Tensor], sizes: tuple[int, int, int], batch: list[int],
                 a: dict, b: dict, bases: dict, y_offset: str, value: str,
                 conv: dict | None = None) -> list[KernelLaunch]:
    """The kernels storing `value` (a float expression over sum, m and n), or the fused node's epilogue
    of it, at output element `at` (y_offset): the tiled GEMM, or the matrix-vector kernel for a few
    rows (no convolution has so few output channels that it would pay). A deep sum with too few tiles
    to fill the device splits along k (LaunchPlanner.split_gemm_tile): the GEMM leaves each slice's
    sums in the scratch buffer, and gemm_sum.cl.j2 adds them in slice order, then applies `value`."""
    rows, columns, depth = sizes
    y = ctx.output(0, "y")
    extras, lines, value = epilogue(ctx, value) if ctx.node.domain == KILN_DOMAIN else ([], [], value)
    shared = dict(M=rows, N=columns, K=depth, batch=batch, a=a, b=b, y_offset=y_offset, epilogue=lines,
                  result=ctx.dialect.store_value(value, y.dtype),
                  bases=[{"name": key, "value": text} for key, text in bases.items()])
    if rows <= GEMV_ROWS and conv is None:
        lanes, per_group, launch = ctx.planner.gemv(columns, depth, b["k_fast"], math.prod(batch))
        launch = launch.over_entries(math.prod(batch), axis=2) if batch else launch
        return [ctx.kernel("gemv.cl.j2", params + extras + [y], launch, LANES=lanes, COLUMNS=per_group, **shared)]
    batches = math.prod(batch)
    tile, slices = ctx.planner.split_gemm_tile(rows, columns, depth, batch=batches)
    a["vector"] = a["vector"] and depth % 4 == 0 and tile.tk % 4 == 0
    b["vector"] = b["vector"] and columns % 4 == 0 and tile.columns % 4 == 0
    slice_depth = round_up(-(-depth // slices), tile.tk)  # whole tile steps per slice
    slices = -(-depth // slice_depth)
    launch = ctx.planner.gemm(tile, rows, columns, batches * slices)
    if conv is not None:  # columns are images x positions
        launch = launch.over_entries(columns, axis=0, per_group=tile.columns)
    elif batch:
        launch = launch.over_entries(batches * slices, axis=2)
    else:  # Y is [rows, columns]: rows walk the batch
        launch = launch.over_entries(rows, axis=1, per_group=tile.rows)
    if slices == 1:
        return [ctx.kernel("gemm.cl.j2", params + extras + [y], launch, tile=tile, conv=conv, split=None, **shared)]
    partial = ctx.scratch(slices * batches * rows * columns)
    split = {"slices": slices, "depth": slice_depth, "batches": batches}
    outputs = batches * rows * columns
    total = ctx.planner.linear(outputs)
    total = total if conv is not None else total.over_entries(outputs)  # a conv's images sit inside its columns
    return [ctx.kernel("gemm.cl.j2", params + [partial], launch, tile=tile, conv=conv, split=split, **shared),
            ctx.kernel("gemm_sum.cl.j2", params + extras + [partial, y], total, split=split, **shared)]


def matmul_shape(a_shape, b_shape) -> tuple[tuple[int, int, int], list[int], dict]:
    """((rows m, columns n, depth k), the broadcast batch dims, the batch bases of A, B and Y) of
    A @ B, a 1-D operand promoted as numpy does."""
    a_shape = (1,) + tuple(a_shape) if len(a_shape) == 1 else tuple(a_shape)
    b_shape = tuple(b_shape) + (1,) if len(b_shape) == 1 else tuple(b_shape)
    (m, k), n = a_shape[-2:], b_shape[-1]
    batch = list(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    bases = {"a_batch": _base(_batch_strides(a_shape, batch)), "b_batch": _base(_batch_strides(b_shape, batch)),
             "y_batch": _base(list(dense_strides(batch + [m, n]))[:-2])}
    return (m, n, k), batch, bases


def _matmul(ctx: GpuContext) -> list[KernelLaunch]:
    a, b = ctx.input(0, "a"), ctx.input(1, "b")
    (m, n, k), batch, bases = matmul_shape(a.shape, b.shape)
    return _gemm_kernel(ctx, [a, b], (m, n, k), batch, _operand(ctx, a, "m", k, "k", 1),
                        _operand(ctx, b, "k", n, "n", 1), bases, f"base + m * {n} + n", "sum")


def _gemm(ctx: GpuContext) -> list[KernelLaunch]:
    attrs = ctx.node.attrs
    a, b, y = ctx.input(0, "a"), ctx.input(1, "b"), ctx.output(0, "y")
    m, n = y.shape
    k = a.shape[0] if attrs.get("transA", 0) else a.shape[1]
    a_strides = (1, m) if attrs.get("transA", 0) else (k, 1)
    b_strides = (1, k) if attrs.get("transB", 0) else (n, 1)
    d = ctx.dialect
    value = f"{d.literal(attrs.get('alpha', 1.0), 'float32')} * sum"
    params, bases = [a, b], {"a_batch": "0", "b_batch": "0", "y_batch": "0"}
    if ctx.input_type(2) is not None:
        c = ctx.input(2, "c")
        shape = (1,) * (2 - len(c.shape)) + c.shape
        strides = [0 if size == 1 else stride for size, stride in zip(shape, dense_strides(shape))]
        params.append(c)
        term = d.load("c", " + ".join(f"{var} * {s}" for var, s in zip("mn", strides) if s) or "0", c.dtype)
        value += f" + {d.literal(attrs.get('beta', 1.0), 'float32')} * {term}"
    return _gemm_kernel(ctx, params, (m, n, k), [], _operand(ctx, a, "m", a_strides[0], "k", a_strides[1]),
                        _operand(ctx, b, "k", b_strides[0], "n", b_strides[1]), bases, f"base + m * {n} + n", value)


def leading_pads(node: Node, in_size, kernel, out_size, strides, dilations) -> list[int]:
    """Pads before each spatial dim, from `pads` or auto_pad (SAME_UPPER puts the odd one at the end)."""
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return [0] * len(in_size)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max(0, (o - 1) * s + (k - 1) * d + 1 - i)
                  for i, k, o, s, d in zip(in_size, kernel, out_size, strides, dilations)]
        return [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals]
    return list(node.attrs.get("pads", [0] * 2 * len(in_size))[:len(in_size)])


@dataclass(frozen=True)
class ConvShape:
    """A Conv as an implicit GEMM per group: rows are the group's output channels, depth its input
    channels times the kernel taps, columns the images times the output positions."""

    images: int
    channels: int
    in_size: list[int]
    out_channels: int
    in_group: int
    kernel: list[int]
    out_size: list[int]
    group: int
    strides: list[int]
    dilations: list[int]
    pads: list[int]

    @property
    def out_group(self) -> int:
        return self.out_channels // self.group

    @property
    def depth(self) -> int:
        return self.in_group * math.prod(self.kernel)

    @property
    def positions(self) -> int:
        return math.prod(self.out_size)

    @property
    def template(self) -> dict:
        """What gemm.cl.j2 and integer_gemm.cl.j2 unravel the im2col view with."""
        return {"in_group": self.in_group, "kernel": self.kernel, "images": self.images, "out_size": self.out_size,
                "strides": self.strides, "pads": self.pads, "dilations": self.dilations, "in_size": self.in_size}

    def image_offset(self) -> str:
        """The input element at im2col (k, n), from the template's unravelled p*, t* and i*."""
        plane = math.prod(self.in_size)
        return " + ".join([f"p0 * {self.channels * plane}", f"t0 * {plane}"] +
                          [f"i{axis} * {stride}" for axis, stride in enumerate(dense_strides(self.in_size))])

    def bases(self) -> dict:
        """The group's first weight row, input channel and output element."""
        plane = math.prod(self.in_size)
        return {"a_batch": f"q0 * {self.out_group * self.depth}", "b_batch": f"q0 * {self.in_group * plane}",
                "y_batch": f"q0 * {self.out_group * self.positions}"}

    def y_offset(self) -> str:
        positions = self.positions
        return f"base + (n / {positions}) * {self.out_channels * positions} + m * {positions} + n % {positions}"


def conv_shape(node: Node, x_shape, w_shape, y_shape) -> ConvShape:
    images, channels, *in_size = x_shape
    out_channels, in_group, *kernel = w_shape
    out_size = list(y_shape[2:])
    spatial = len(in_size)
    strides = list(node.attrs.get("strides", [1] * spatial))
    dilations = list(node.attrs.get("dilations", [1] * spatial))
    pads = leading_pads(node, in_size, kernel, out_size, strides, dilations)
    return ConvShape(images, channels, in_size, out_channels, in_group, kernel, out_size,
                     int(node.attrs.get("group", 1)), strides, dilations, pads)


def _conv(ctx: GpuContext) -> list[KernelLaunch]:
    node, d = ctx.node, ctx.dialect
    x, w, y = ctx.input(0, "b"), ctx.input(1, "a"), ctx.output(0, "y")
    g = conv_shape(node, x.shape, weights_shape(node, w.shape), y.shape)
    b = {"ctype": x.ctype, "load": d.load("b", f"base + {g.image_offset()}", x.dtype), "k_fast": False,
         "vector": False, "vector_load": ""}
    bases = g.bases()
    a = _operand(ctx, w, "m", g.depth, "k", 1)
    if node.attrs.get("transposed_weights", 0):  # blocks of B output channels, each [depth, B]
        block, bases["a_batch"] = w.shape[2], f"q0 * {g.out_group}"  # the group's first row
        at = f"((base + m) / {block}) * {g.depth * block} + k * {block} + (base + m) % {block}"
        a = {**a, "load": d.load("a", at, w.dtype), "k_fast": False, "vector": False}
    params, value = [w, x], "sum"
    if ctx.input_type(2) is not None:
        bias = ctx.input(2, "c")
        params.append(bias)
        bases["c_batch"] = f"q0 * {g.out_group}"
        value = f"sum + {d.load('c', 'c_batch + m', bias.dtype)}"
    return _gemm_kernel(ctx, params, (g.out_group, g.images * g.positions, g.depth), [g.group], a, b, bases,
                        g.y_offset(), value, g.template)


def _check_floats(graph: Graph, node: Node) -> str | None:
    """Every input of the base op (a fused node's first ones) is a float tensor."""
    count = BASES[node.op_type][1] if node.domain == KILN_DOMAIN else node.num_inputs
    for value_type in graph.input_types(node)[:count]:
        if value_type is not None:
            problem = dtype_problem(node, value_type.dtype, SINGLE)
            if problem:
                return problem
    return None


def _check_conv(graph: Graph, node: Node) -> str | None:
    problem = _check_floats(graph, node)
    if problem or node.attrs.get("transposed_weights", 0):  # fuse-epilogues laid out a checked Conv's weights
        return problem
    return conv_problem(node, *graph.input_types(node)[:2])


def conv_problem(node: Node, x: TensorType, w: TensorType) -> str | None:
    """Why a convolution of input `x` by weights `w` does not fit the implicit GEMM (None when it does)."""
    op = node.op_type
    if len(x.shape) < 3:
        return f"{op} needs an input of rank >= 3 (N, C, spatial...), not {list(x.shape)}"
    group = int(node.attrs.get("group", 1))
    if x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        return f"{op} input channels {x.shape[1]} / weights {list(w.shape)} do not match group={group}"
    if node.attrs.get("auto_pad", "NOTSET") not in AUTO_PADS:
        return f"{op} auto_pad={node.attrs['auto_pad']!r} is not one of {', '.join(AUTO_PADS)}"
    return None


def _check_fused(graph: Graph, node: Node) -> str | None:
    """A FusedConv/FusedGemm/FusedMatMul: its base op's check, then every epilogue step's."""
    base, count = BASES[node.op_type]
    problem = BUILDERS[base][0](graph, node)
    if problem:
        return problem
    extras = graph.input_types(node)[count:]
    dtypes = [t.dtype for t in epilogue_types(node, node.outputs[0], extras)]
    return steps_problem(node, epilogue_steps(node), dtypes)


BUILDERS = {"MatMul": (_check_floats, _matmul), "Gemm": (_check_floats, _gemm), "Conv": (_check_conv, _conv)}
for _base_op, (_check, _build) in BUILDERS.items():
    register_gpu_kernel(GpuKernelSpec((_base_op,), _check, _build))
for _fused, (_base_op, _) in BASES.items():
    register_gpu_kernel(GpuKernelSpec((f"{KILN_DOMAIN}::{_fused}",), _check_fused, BUILDERS[_base_op][1]))
