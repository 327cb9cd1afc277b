"""kiln::MaskTail on the gpu (compiler/ops/tail_mask.py): elements at positions >= the run-time extent of
a dynamic dim set to the fill value. The extent is read from the runtime's `extent` buffer (one long it
writes before each inference); one work item per element."""

from __future__ import annotations

import math

from compiler.codegen.opencl.kernels.registry import (GpuContext, GpuKernelSpec, KernelLaunch, Tensor, dtype_problem,
                                                      register_gpu_kernel)
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ir.types import TensorType
from compiler.ops.tail_mask import OP_TYPE

FLOATS = ("float32", "float64")


def _check(graph: Graph, node: Node) -> str | None:
    return dtype_problem(node, node.outputs[0].dtype, FLOATS)


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    node = ctx.node
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    extent = Tensor("extent", "extent", 0, TensorType("int64", (1,)), "long")
    shape, axis = node.outputs[0].shape, node.attrs["axis"]
    run = node.attrs["inner"] * math.prod(shape[axis + 1:])
    fill = ctx.dialect.literal(float(node.attrs["fill"]), y.type.dtype)
    value = f"((i / {run}) % {node.attrs['bound']} < extent[0]) ? x[i] : {fill}"
    return [ctx.kernel("copy.cl.j2", [x, extent, y], ctx.planner.linear(y.size), count=y.size, sizes=[y.size],
                       target="y[i]", lines=[], value=value)]


register_gpu_kernel(GpuKernelSpec((f"{KILN_DOMAIN}::{OP_TYPE}",), _check, _launches, in_place=lambda graph, node: 0))
