"""QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.

Quantize and Dequantize run over the shared broadcasting loop, the scale and zero point viewed
as tensors that broadcast against x (compiler/ops/quantize_layout.py), so the inner loop stays
contiguous and the parameters may be computed at run time. Integer results round half to even and
saturate to the output type, as onnx.reference and ONNX Runtime do; float8/float4 results are
x / scale cast as Cast does (narrow_types.cast), saturating unless saturate=0.
"""

from __future__ import annotations

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, const_i64, convert, for_range, load, store
from compiler.codegen.llvm.kernels.broadcast import emit_broadcast_loop, row_count
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic
from compiler.codegen.llvm.kernels.narrow_types import FLOAT8, cast
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, TensorArg, register_kernel
from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType
from compiler.ops.onnx_bridge import dtype_from_onnx
from compiler.ops.quantize_layout import layout_problem, quantize_layout

QUANTIZED = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
             "uint4": (0, 15), "int4": (-8, 7), "uint2": (0, 3), "int2": (-2, 1)}  # integer types: value range
QUANTIZED_FLOATS = (*FLOAT8, "float4e2m1")
SCALES = ("float16", "float32", "float64")
_WIDTH = {"float16": 0, "float32": 1, "float64": 2}


def saturate_round(b: ir.IRBuilder, value: ir.Value, offset: ir.Value | None, dtype: str) -> ir.Value:
    """`dtype`(clamp(round_half_even(value) + offset)) for a float value (NaN gives the lowest value)."""
    if isinstance(value.type, ir.HalfType):
        value = b.fpext(value, F32)
    value = intrinsic(b, "roundeven", value)
    if offset is not None:
        value = b.fadd(value, offset)
    low, high = QUANTIZED[dtype]
    value = intrinsic(b, "maxnum", value, float_constant(value.type, low))
    value = intrinsic(b, "minnum", value, float_constant(value.type, high))
    return cast(b, value, _float_name(value.type), dtype)


def _float_name(value_type: ir.Type) -> str:
    return {"f16": "float16", "f32": "float32", "f64": "float64"}[value_type.intrinsic_name]


def _wider(*dtypes: str) -> str:
    return max(dtypes, key=_WIDTH.__getitem__)


# ---- QuantizeLinear / DequantizeLinear ----

def _check_quantize(graph: Graph, node: Node) -> str | None:
    x, scale = graph.input_types(node)[:2]
    out = node.outputs[0].dtype
    if out not in QUANTIZED and out not in QUANTIZED_FLOATS:
        return f"QuantizeLinear to {out} is not compiled by the cpu target"
    if x.dtype not in SCALES or scale.dtype not in SCALES:
        return (f"QuantizeLinear of {x.dtype} by a {scale.dtype} scale is not compiled by the cpu target "
                f"(float16/32/64 only)")
    precision = node.attrs.get("precision", 0)
    if precision and dtype_from_onnx(precision) not in SCALES:
        return f"QuantizeLinear precision {dtype_from_onnx(precision)} is not compiled by the cpu target"
    return layout_problem(graph, node)


def _check_dequantize(graph: Graph, node: Node) -> str | None:
    x, scale = graph.input_types(node)[:2]
    if x.dtype not in (*QUANTIZED, *QUANTIZED_FLOATS, "int32"):
        return f"DequantizeLinear of {x.dtype} is not compiled by the cpu target"
    if scale.dtype not in SCALES or node.outputs[0].dtype not in SCALES:
        return (f"DequantizeLinear to {node.outputs[0].dtype} with a {scale.dtype} scale is not compiled by the "
                f"cpu target (float16/32/64 only)")
    return layout_problem(graph, node)


def _quantize(graph: Graph, node: Node, dtypes: list[str]):
    precision = node.attrs.get("precision", 0)
    compute = dtype_from_onnx(precision) if precision else _wider(dtypes[0], dtypes[1])
    out, saturate = node.outputs[0].dtype, bool(node.attrs.get("saturate", 1))

    def body(b: ir.IRBuilder, values: list[ir.Value]) -> ir.Value:
        x, scale = (convert(b, v, d, compute) for v, d in zip(values[:2], dtypes))
        quotient = b.fdiv(x, scale)
        if out in QUANTIZED_FLOATS:  # the zero point is 0 (float8) or added unrounded (float4)
            if out == "float4e2m1" and len(values) > 2:
                quotient = b.fadd(quotient, cast(b, values[2], dtypes[2], compute))
            return cast(b, quotient, compute, out, saturate)
        if compute == "float16":  # round and add the zero point where every quantized value is exact
            quotient = b.fpext(quotient, F32)
        offset = cast(b, values[2], dtypes[2], _float_name(quotient.type)) if len(values) > 2 else None
        return saturate_round(b, quotient, offset, out)
    return body


def _dequantize(graph: Graph, node: Node, dtypes: list[str]):
    difference = "int64" if dtypes[0] == "int32" else "int32"  # x - zero point is exact
    compute = "float64" if dtypes[1] == "float64" else "float32"
    out = node.outputs[0].dtype

    def body(b: ir.IRBuilder, values: list[ir.Value]) -> ir.Value:
        if dtypes[0] in QUANTIZED_FLOATS:  # their zero point must be 0
            x = cast(b, values[0], dtypes[0], compute)
        else:
            x = cast(b, values[0], dtypes[0], difference)
            if len(values) > 2:
                x = b.sub(x, cast(b, values[2], dtypes[2], difference))
            x = convert(b, x, difference, compute)
        return convert(b, b.fmul(x, convert(b, values[1], dtypes[1], compute)), compute, out)
    return body


def _views(ctx: KernelContext) -> tuple[list[TensorArg], TensorArg]:
    view, params = quantize_layout(ctx.graph, ctx.node)
    args = [arg for arg in ctx.inputs[:3] if arg is not None]
    operands = [TensorArg(args[0].ptr, TensorType(args[0].dtype, view))]
    operands += [TensorArg(arg.ptr, TensorType(arg.dtype, shape)) for arg, shape in zip(args[1:], params)]
    out = ctx.outputs[0]
    return operands, TensorArg(out.ptr, TensorType(out.dtype, view))


def _work_items(graph: Graph, node: Node) -> int:
    view, params = quantize_layout(graph, node)
    return row_count(view, [view, *params])


def _emit(ctx: KernelContext) -> None:
    operands, out = _views(ctx)
    make_body = _quantize if ctx.node.op_type == "QuantizeLinear" else _dequantize
    emit_broadcast_loop(ctx, operands, out, make_body(ctx.graph, ctx.node, [arg.dtype for arg in operands]))


def _check(graph: Graph, node: Node) -> str | None:
    return (_check_quantize if node.op_type == "QuantizeLinear" else _check_dequantize)(graph, node)


register_kernel(KernelSpec(("QuantizeLinear", "DequantizeLinear"), _check, _work_items, _emit))


# ---- DynamicQuantizeLinear ----

def _check_dynamic(graph: Graph, node: Node) -> str | None:
    dtype = graph.input_types(node)[0].dtype
    if dtype != "float32":
        return f"DynamicQuantizeLinear of {dtype} is not compiled by the cpu target (float32 only)"
    return None


def _emit_dynamic(ctx: KernelContext) -> None:
    """One work item: the scale needs the range of the whole tensor before any element is quantized
    (a memory-bound two-pass sweep). Arithmetic in float32 step by step as onnx.reference does."""
    b, x = ctx.builder, ctx.inputs[0]
    y, y_scale, y_zero_point = ctx.outputs
    zero, top = float_constant(F32, 0.0), float_constant(F32, 255.0)
    low, high = b.alloca(F32), b.alloca(F32)  # in the entry block, so they become registers
    with b.if_then(b.icmp_signed("<", ctx.begin, ctx.end)):
        b.store(zero, low)
        b.store(zero, high)
        with for_range(b, 0, x.size, name="range") as i:
            value = load(b, x.ptr, "float32", i)
            b.store(intrinsic(b, "minnum", b.load(low), value), low)
            b.store(intrinsic(b, "maxnum", b.load(high), value), high)
        low, high = b.load(low), b.load(high)
        span = b.select(b.fcmp_ordered("==", high, low), float_constant(F32, 1.0), b.fsub(high, low))
        scale = b.fdiv(span, top)
        initial = b.fsub(zero, b.fdiv(low, scale))
        zero_point = intrinsic(b, "roundeven", intrinsic(b, "minnum", intrinsic(b, "maxnum", initial, zero), top))
        store(b, scale, y_scale.ptr, "float32", const_i64(0))
        store(b, convert(b, zero_point, "float32", "uint8"), y_zero_point.ptr, "uint8", const_i64(0))
        with for_range(b, 0, x.size, name="quantize") as i:
            quotient = b.fdiv(load(b, x.ptr, "float32", i), scale)
            store(b, saturate_round(b, quotient, zero_point, "uint8"), y.ptr, "uint8", i)


register_kernel(KernelSpec(("DynamicQuantizeLinear",), _check_dynamic, lambda graph, node: 1, _emit_dynamic))
