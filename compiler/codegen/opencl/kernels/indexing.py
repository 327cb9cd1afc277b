"""Outputs whose elements are picked by indices: EyeLike, OneHot, ReverseSequence, GatherND. One
work item per output element (the copy template): its coordinates say which element it reads, or
which of two values it takes. Run-time indices are read by the kernel; negative ones count from
the end, as ONNX says."""

from __future__ import annotations

from compiler.codegen.opencl.dialect import FLOATS, SIGNED, UNSIGNED, compute_dtype
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, register_gpu_kernel
from compiler.ir.graph import Graph, Node

INDICES = frozenset({"int32", "int64"})  # what ReverseSequence and GatherND index with


def _copy(ctx: GpuContext, params: list, value: str, lines: list[str] | None = None) -> list[KernelLaunch]:
    y = params[-1]
    return [ctx.kernel("copy.cl.j2", params, ctx.planner.linear(y.size), count=y.size, sizes=list(y.shape) or [1],
                       target="y[i]", lines=lines or [], value=value)]


def _offset(coordinates: list[str], strides) -> str:
    return " + ".join(f"(long)({c}) * {s}" for c, s in zip(coordinates, strides)) or "0"


def _pick(ctx: GpuContext, condition: str, on: str, off: str) -> str:
    y = ctx.node.outputs[0]
    return f"(({condition}) ? {ctx.dialect.store_value(on, y.dtype)} : {ctx.dialect.store_value(off, y.dtype)})"


def _eye_like(ctx: GpuContext) -> list[KernelLaunch]:
    y = ctx.output(0, "y")
    one, zero = (ctx.dialect.literal(v, y.dtype) for v in (1, 0))
    return _copy(ctx, [y], _pick(ctx, f"(long)c1 - (long)c0 == {int(ctx.node.attrs.get('k', 0))}L", one, zero))


def _one_hot(ctx: GpuContext) -> list[KernelLaunch]:
    indices, values, y = ctx.input(0, "indices"), ctx.input(2, "values"), ctx.output(0, "y")
    axis = ctx.node.attrs.get("axis", -1) % len(y.shape)
    depth = y.shape[axis]
    outer = [f"c{d}" for d in range(len(y.shape)) if d != axis]
    index = ctx.dialect.convert(ctx.dialect.load("indices", _offset(outer, indices.strides), indices.dtype),
                                compute_dtype(indices.dtype), "int64")
    lines = [f"long at = {index};", f"if (at < 0) at += {depth}L;"]
    on, off = (ctx.dialect.load("values", str(k), values.dtype) for k in (1, 0))
    return _copy(ctx, [indices, values, y], _pick(ctx, f"at == (long)c{axis}", on, off), lines)


def _reverse_sequence(ctx: GpuContext) -> list[KernelLaunch]:
    x, lengths, y = ctx.input(0, "x"), ctx.input(1, "lengths"), ctx.output(0, "y")
    batch, time = ctx.node.attrs.get("batch_axis", 1), ctx.node.attrs.get("time_axis", 0)
    source = [f"c{d}" if d != time else "t" for d in range(len(x.shape))]
    lines = [f"const long length = {ctx.dialect.convert(f'lengths[c{batch}]', lengths.dtype, 'int64')};",
             f"const long t = (long)c{time} < length ? length - 1 - (long)c{time} : (long)c{time};"]
    return _copy(ctx, [x, lengths, y], f"x[{_offset(source, x.strides)}]", lines)


def _gather_nd(ctx: GpuContext) -> list[KernelLaunch]:
    data, indices, y = ctx.input(0, "data"), ctx.input(1, "indices"), ctx.output(0, "y")
    batch = ctx.node.attrs.get("batch_dims", 0)
    depth, rows = indices.shape[-1], len(indices.shape) - 1
    index_base = _offset([f"c{d}" for d in range(rows)], indices.strides[:rows])
    lines = [f"const long row = {index_base};"]
    picked = []
    for k in range(depth):
        dim = data.shape[batch + k]
        lines += [f"long i{k} = {ctx.dialect.convert(f'indices[row + {k}]', indices.dtype, 'int64')};",
                  f"if (i{k} < 0) i{k} += {dim}L;"]
        picked.append(f"i{k}")
    tail = [f"c{rows + d}" for d in range(len(data.shape) - batch - depth)]
    coordinates = [f"c{d}" for d in range(batch)] + picked + tail
    return _copy(ctx, [data, indices, y], f"data[{_offset(coordinates, data.strides)}]", lines)


def _check(graph: Graph, node: Node) -> str | None:
    types = graph.input_types(node)
    if node.op_type == "OneHot":
        if types[0].dtype not in FLOATS | SIGNED | UNSIGNED:
            return f"OneHot indices of {types[0].dtype} are not compiled by the gpu target"
    elif node.op_type == "ReverseSequence":
        if types[1].dtype not in INDICES:
            return f"ReverseSequence sequence_lens of {types[1].dtype} is not compiled by the gpu target"
    elif node.op_type == "GatherND" and types[1].dtype not in INDICES:
        return f"GatherND indices of {types[1].dtype} are not compiled by the gpu target"
    return None


register_gpu_kernel(GpuKernelSpec(("EyeLike",), _check, _eye_like))
register_gpu_kernel(GpuKernelSpec(("OneHot",), _check, _one_hot))
register_gpu_kernel(GpuKernelSpec(("ReverseSequence",), _check, _reverse_sequence))
register_gpu_kernel(GpuKernelSpec(("GatherND",), _check, _gather_nd))
