"""MaxPool (with its Indices), AveragePool and LpPool over any number of spatial dims.

One work item per output element loops over its window, skipping taps outside the input. The
average divides by the taps inside (count_include_pad=0), or by the taps inside plus those in the
padding but not past it (ceil_mode windows can overhang the end padding), as ONNX Runtime does.
"""

from __future__ import annotations

import math

from compiler.codegen.opencl.dialect import SINGLE
from compiler.codegen.opencl.kernels.registry import (GpuContext, GpuKernelSpec, KernelLaunch, dtype_problem,
                                                      register_gpu_kernel)
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node, Value
from compiler.ops.pool_geometry import pool_dims, pool_problem

POOL_DTYPES = {"MaxPool": SINGLE | {"int8", "uint8"}, "AveragePool": SINGLE, "LpPool": SINGLE}


def _check(graph: Graph, node: Node) -> str | None:
    problem = dtype_problem(node, graph.input_types(node)[0].dtype, POOL_DTYPES[node.op_type])
    if problem:
        return problem
    return pool_problem(graph, node)


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    node, d = ctx.node, ctx.dialect
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    dims = pool_dims(ctx.graph, node)
    sizes = [dim.size_in for dim in dims]
    offset = " + ".join(f"i{axis} * {stride}" for axis, stride in enumerate(dense_strides(sizes)))
    column_major = dense_strides(sizes[::-1])[::-1]
    params = [x, y]
    indices = node.op_type == "MaxPool" and len(node.outputs) > 1 and bool(
        ctx.graph.uses(Value(node.name, 1)) or ctx.graph.is_graph_output(Value(node.name, 1)))
    if indices:
        params.append(ctx.output(1, "y1"))
    kind = {"MaxPool": "max", "LpPool": "lp"}.get(node.op_type, "average")
    p = float(node.attrs.get("p", 2))
    divisor = kind == "average" and bool(node.attrs.get("count_include_pad", 0))
    result = {"max": "acc", "lp": f"pow(acc, {d.literal(1 / p, 'float32')})",
              "average": "acc / divisor" if divisor else "acc / (float)inside"}[kind]
    index_of = "at" if not node.attrs.get("storage_order", 0) else \
        "plane + " + " + ".join(f"i{axis} * {stride}" for axis, stride in enumerate(column_major))
    planes = math.prod(x.shape[:2])
    count = math.prod(y.shape)
    launch = ctx.planner.linear(count).over_entries(count)
    return [ctx.kernel("pooling.cl.j2", params, launch, count=count, planes=planes,
                       plane=math.prod(sizes), dims=dims, offset=offset, load=d.load("x", "at", x.dtype),
                       acc_type=d.compute_type(x.dtype), init=d.lowest(x.dtype) if kind == "max" else "0.0f",
                       kind=kind, float=x.dtype in SINGLE, p=d.literal(p, "float32"), indices=indices,
                       index_of=index_of, divisor=divisor, result=d.store_value(result, y.dtype))]


register_gpu_kernel(GpuKernelSpec(tuple(POOL_DTYPES), _check, _launches))
