"""Resize and Upsample: one work item per output element, from the sampling tables of
compiler/codegen/resize_tables.py (the cpu target's too), baked into the kernel as __constant
arrays. Nearest copies one element, so it serves every dtype; linear and cubic blend float32.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.codegen.copy_plan import NotCompiled, plan_problem
from compiler.codegen.opencl.dialect import kind_of
from compiler.codegen.opencl.kernels.registry import NAME, GpuContext, GpuKernelSpec, KernelLaunch, register_gpu_kernel
from compiler.codegen.resize_tables import Axis, resized_axes, settings_of
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node

BLENDED = ("float32",)
NEAREST = ("float32", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool")
TABLE_BYTES = 32 * 1024  # __constant data one kernel may hold on any OpenCL 1.2 device (64 KiB), with room to spare
CTYPES = {np.dtype(np.uint16): "ushort", np.dtype(np.int32): "int", np.dtype(np.float32): "float",
          np.dtype(np.uint8): "uchar"}


def _axes(graph: Graph, node: Node) -> list[Axis]:
    settings = settings_of(node)
    dtype = graph.input_types(node)[0].dtype
    handled = NEAREST if settings.mode == "nearest" else BLENDED
    if dtype not in handled:
        raise NotCompiled(f"{node.op_type} mode={settings.mode} on {dtype} is not compiled by the gpu target "
                          f"(it handles {', '.join(handled)})")
    axes = resized_axes(graph, node, settings)
    size = sum(array.size * array.itemsize for axis in axes for array in _tables(axis).values())
    if size > TABLE_BYTES:
        raise NotCompiled(f"{node.op_type} to {node.outputs[0].shape} needs {size} bytes of sampling tables, more than "
                          f"the {TABLE_BYTES} the gpu target puts in one kernel")
    return axes


def _tables(axis: Axis) -> dict[str, np.ndarray]:
    """An axis's tables as the kernel holds them (none for an axis read straight through)."""
    if axis.index is None:
        return {}
    index_type = np.uint16 if axis.size_in <= np.iinfo(np.uint16).max else np.int32
    tables = {"index": axis.index.astype(index_type).reshape(-1)}
    if axis.weight is not None:
        tables["weight"] = axis.weight.astype(np.float32).reshape(-1)
    if axis.outside is not None and axis.outside.any():
        tables["outside"] = axis.outside.astype(np.uint8)
    return tables


def _fill(ctx: GpuContext, value: float, dtype: str) -> str:
    """extrapolation_value in the output dtype (integers rounded half to even and saturated)."""
    if kind_of(dtype) in ("signed", "unsigned"):
        limits = np.iinfo(dtype)
        value = int(np.clip(np.rint(value), limits.min, limits.max))
    return ctx.dialect.store_value(ctx.dialect.literal(value, dtype), dtype)


def _launches(ctx: GpuContext) -> list[KernelLaunch]:
    node, dialect = ctx.node, ctx.dialect
    axes = _axes(ctx.graph, node)
    settings = settings_of(node)
    x, y = ctx.input(0, "x"), ctx.output(0, "y")
    weighted = settings.mode != "nearest"
    tables, described, outside = [], [], []
    for d, axis in enumerate(axes):
        for kind, values in _tables(axis).items():
            literals = [dialect.literal(v, "float32") for v in values] if kind == "weight" else [str(v) for v in values]
            tables.append({"name": f"{kind}{d}", "ctype": CTYPES[values.dtype], "literals": literals})
            if kind == "outside":
                outside.append(f"{NAME}_outside{d}[p{d}]")
        described.append({"d": d, "taps": axis.taps if axis.index is not None else 0,
                          "previous": f"w{d - 1}" if d else "1.0f"})
    strides = dense_strides([axis.size_in for axis in axes])
    offset = " + ".join(f"i{d} * {stride}" for d, stride in enumerate(strides) if stride)
    count = math.prod(axis.size_out for axis in axes)
    result = dialect.store_value("acc", y.dtype)
    launch = ctx.kernel("resize.cl.j2", [x, y], ctx.planner.linear(count), count=count, tables=tables,
                        sizes=[axis.size_out for axis in axes], axes=described, weighted=weighted, offset=offset,
                        outside=" || ".join(outside), fill=_fill(ctx, settings.extrapolation, y.dtype),
                        load=dialect.load("x", "at", x.dtype), result=result)
    return [launch]


register_gpu_kernel(GpuKernelSpec(("Resize", "Upsample"), lambda graph, node: plan_problem(_axes, graph, node),
                                  _launches))
