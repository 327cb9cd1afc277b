"""BitCast: each element's bits reinterpreted as the output dtype of the same width (as_<type>
in OpenCL C; a plain copy where both are stored in the same C type, as float16 and uint16 are)."""

from __future__ import annotations

from compiler.codegen.opencl.dialect import NARROW_INTS, STORAGE_TYPES
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, register_gpu_kernel
from compiler.ir.graph import Graph, Node

BYTES = {"char": 1, "uchar": 1, "short": 2, "ushort": 2, "int": 4, "uint": 4, "float": 4, "long": 8, "ulong": 8, "double": 8}


def _check(graph: Graph, node: Node) -> str | None:
    source, target = graph.input_types(node)[0].dtype, node.outputs[0].dtype
    if {source, target} & {"bool", *NARROW_INTS} or BYTES[STORAGE_TYPES[source]] != BYTES[STORAGE_TYPES[target]]:
        return f"BitCast from {source} to {target} is not compiled by the gpu target"
    return None


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    value = "x[i]" if x.ctype == y.ctype else f"as_{y.ctype}(x[i])"
    return [ctx.kernel("copy.cl.j2", [x, y], ctx.planner.linear(y.size), count=y.size, sizes=[y.size],
                       target="y[i]", lines=[], value=value)]


register_gpu_kernel(GpuKernelSpec(("BitCast",), _check, _launches))
