"""kiln::MaskTail and kiln::ExtentScale on the gpu (compiler/ops/tail_mask.py). The dynamic dims' sizes are
read from the runtime's `extent` buffer (one long per dim, written before each inference); one work
item per element."""

from __future__ import annotations

import math

from compiler.codegen.opencl.kernels.registry import (GpuContext, GpuKernelSpec, KernelLaunch, Tensor, dtype_problem,
                                                      register_gpu_kernel)
from compiler.extent_types import Extent
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ir.types import TensorType
from compiler.ops.tail_mask import OP_TYPE, SCALE_OP_TYPE

FLOATS = ("float32", "float64")


def _check(graph: Graph, node: Node) -> str | None:
    return dtype_problem(node, node.outputs[0].dtype, FLOATS)


def _valid(extent: Extent) -> str:
    """Extent.size as a C expression of the sizes in `extent[]`."""
    size = f"extent[{extent.dim}]"
    for pads, span, stride, ceil in extent.steps:
        size = f"(({size} + {pads - span + (stride - 1 if ceil else 0)}) / {stride} + 1)"
    return size


def _copy(ctx: GpuContext, value: str) -> list[KernelLaunch]:
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    extent = Tensor("extent", "extent", 0, TensorType("int64", (1,)), "long")
    return [ctx.kernel("copy.cl.j2", [x, extent, y], ctx.planner.linear(y.size), count=y.size, sizes=[y.size],
                       target="y[i]", lines=[], value=value)]


def _mask(ctx: GpuContext) -> list[KernelLaunch]:
    node = ctx.node
    shape, axis = node.outputs[0].shape, node.attrs["axis"]
    run = node.attrs["inner"] * math.prod(shape[axis + 1:])
    fill = ctx.dialect.literal(float(node.attrs["fill"]), node.outputs[0].dtype)
    valid = _valid(Extent.from_json(node.attrs["extent"]))
    position = f"((i / {run}) % {node.attrs['bound']})"
    return _copy(ctx, f"({position} < {valid} || {position} >= {valid} + {node.attrs['reach']}) ? x[i] : {fill}")


def _scale(ctx: GpuContext) -> list[KernelLaunch]:
    node = ctx.node
    ctype = ctx.dialect.type(node.outputs[0].dtype)
    ratio = " * ".join(f"(({ctype}){bound} / ({ctype}){_valid(Extent.from_json(extent))})"
                       for extent, bound in zip(node.attrs["extents"], node.attrs["bounds"]))
    return _copy(ctx, f"x[i] * {ratio}")


register_gpu_kernel(GpuKernelSpec((f"{KILN_DOMAIN}::{OP_TYPE}",), _check, _mask, in_place=lambda graph, node: 0))
register_gpu_kernel(GpuKernelSpec((f"{KILN_DOMAIN}::{SCALE_OP_TYPE}",), _check, _scale,
                                  in_place=lambda graph, node: 0))
