"""Scalar math for kernels: LLVM intrinsics where LLVM has one, libm otherwise (vector_math.py holds
exp, log, tanh, erf and sigmoid, which kernels call instead: their float32 forms vectorize)."""

from __future__ import annotations

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, F64

_LIBM_SUFFIX = {F32: "f", F64: ""}
_INTRINSIC_SUFFIX = {F32: "f32", F64: "f64"}


def _declared(module: ir.Module, symbol: str, return_type: ir.Type, argument_types: list[ir.Type]) -> ir.Function:
    try:
        return module.get_global(symbol)
    except KeyError:
        return ir.Function(module, ir.FunctionType(return_type, argument_types), name=symbol)


def intrinsic(builder: ir.IRBuilder, name: str, *args: ir.Value) -> ir.Value:
    """Call llvm.<name> on float arguments (scalars or vectors) of one type (exp, log, sqrt, fabs, maximum,
    pow, ...)."""
    value_type = args[0].type
    if isinstance(value_type, ir.VectorType):
        symbol = f"llvm.{name}.v{value_type.count}{_INTRINSIC_SUFFIX[value_type.element]}"
    else:
        symbol = f"llvm.{name}.{_INTRINSIC_SUFFIX[value_type]}"
    return builder.call(_declared(builder.module, symbol, value_type, [value_type] * len(args)), list(args))


def libm(builder: ir.IRBuilder, name: str, *args: ir.Value) -> ir.Value:
    """Call the C math library's `name` (tanhf/tanh, erff/erf, ...) for the argument's float type."""
    value_type = args[0].type
    symbol = name + _LIBM_SUFFIX[value_type]
    return builder.call(_declared(builder.module, symbol, value_type, [value_type] * len(args)), list(args))


def float_to_int(builder: ir.IRBuilder, value: ir.Value, int_type: ir.IntType, signed: bool) -> ir.Value:
    """Float to integer truncating toward zero; out of range saturates and NaN gives 0 (fptosi would be poison)."""
    symbol = f"llvm.fpto{'s' if signed else 'u'}i.sat.i{int_type.width}.{_INTRINSIC_SUFFIX[value.type]}"
    return builder.call(_declared(builder.module, symbol, int_type, [value.type]), [value])


def float_constant(value_type: ir.Type, value: float) -> ir.Constant:
    return ir.Constant(value_type, float(value))


def select_max(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, kind: str) -> ir.Value:
    """max(a, b); for floats a NaN in either operand gives NaN (as numpy and ONNX do)."""
    if kind == "float":
        return intrinsic(builder, "maximum", a, b)
    compare = builder.icmp_signed if kind == "signed" else builder.icmp_unsigned
    return builder.select(compare(">", a, b), a, b)


def select_min(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, kind: str) -> ir.Value:
    if kind == "float":
        return intrinsic(builder, "minimum", a, b)
    compare = builder.icmp_signed if kind == "signed" else builder.icmp_unsigned
    return builder.select(compare("<", a, b), a, b)
