"""MaxPool (with its Indices), AveragePool and LpPool over any number of spatial dims.

One work item per output element loops over its window, skipping taps outside the input. The
average divides by the taps inside (count_include_pad=0), or by the taps inside plus those in the
padding but not past it (ceil_mode windows can overhang the end padding), as ONNX Runtime does.
"""

from __future__ import annotations

import math

from compiler.codegen.opencl.dialect import FLOATS
from compiler.codegen.opencl.kernels.linear import AUTO_PADS
from compiler.codegen.opencl.kernels.registry import (GpuContext, GpuKernelSpec, KernelLaunch, dtype_problem,
                                                      register_gpu_kernel, row_major)
from compiler.ir.graph import Graph, Node, Value
from compiler.ops.pool_geometry import pool_dims

POOL_DTYPES = {"MaxPool": FLOATS | {"int8", "uint8"}, "AveragePool": FLOATS, "LpPool": FLOATS}


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    problem = dtype_problem(node, x.dtype, POOL_DTYPES[node.op_type])
    if problem:
        return problem
    spatial = len(x.shape) - 2
    if spatial < 1:
        return f"{node.op_type} needs an input of rank >= 3"
    attrs = node.attrs
    if attrs.get("auto_pad", "NOTSET") not in AUTO_PADS:
        return f"{node.op_type} auto_pad={attrs['auto_pad']!r} is not one of {', '.join(AUTO_PADS)}"
    if attrs.get("storage_order", 0) not in (0, 1):
        return f"MaxPool storage_order={attrs['storage_order']} is not 0 (row major) or 1 (column major)"
    for name, per_dim in (("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("pads", 2)):
        value = attrs.get(name)
        if (value is None and name == "kernel_shape") or (value is not None and len(value) != per_dim * spatial):
            return f"{node.op_type} needs {name} with {per_dim * spatial} values for {spatial} spatial dims"
    if any(dim.taps_inside(position) == 0 for dim in pool_dims(graph, node) for position in range(dim.size_out)):
        return (f"{node.op_type} output shape {node.outputs[0].shape} has windows that read no input element "
                "(onnx shape inference keeps ceil_mode windows that start past the input; ONNX Runtime drops them)")
    return None


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    node, d = ctx.node, ctx.dialect
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    dims = pool_dims(ctx.graph, node)
    sizes = [dim.size_in for dim in dims]
    offset = " + ".join(f"i{axis} * {stride}" for axis, stride in enumerate(row_major(sizes)))
    column_major = row_major(sizes[::-1])[::-1]
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
    return [ctx.kernel("pooling.cl.j2", params, ctx.planner.linear(count), count=count, planes=planes,
                       plane=math.prod(sizes), dims=dims, offset=offset, load=d.load("x", "at", x.dtype),
                       acc_type=d.compute_type(x.dtype), init=d.lowest(x.dtype) if kind == "max" else "0.0f",
                       kind=kind, float=x.dtype in FLOATS, p=d.literal(p, "float32"), indices=indices,
                       index_of=index_of, divisor=divisor, result=d.store_value(result, y.dtype))]


register_gpu_kernel(GpuKernelSpec(tuple(POOL_DTYPES), _check, _launches))
