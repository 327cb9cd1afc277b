"""Elementwise ops (unary, binary, variadic, comparisons, Where) over the broadcasting loop."""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Callable

from llvmlite import ir

from compiler.codegen.broadcast_dims import same_shape_input
from compiler.codegen.elementwise_support import elementwise_problem
from compiler.codegen.llvm.irhelpers import I8, convert, kind_of
from compiler.codegen.llvm.kernels.broadcast import batch_row_items, emit_broadcast_loop, row_count
from compiler.codegen.llvm.kernels.elementwise_math import bit_shift, divide, is_inf, is_nan, mod, power, shrink, sign
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic, libm, select_max, select_min
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.codegen.llvm.kernels.vector_math import erf, exp, log, sigmoid, tanh
from compiler.ir.graph import Graph, Node

FLOATS = frozenset({"float16", "float32", "float64"})
SIGNED = frozenset({"int8", "int16", "int32", "int64"})
UNSIGNED = frozenset({"uint8", "uint16", "uint32", "uint64"})
NUMBERS = FLOATS | SIGNED | UNSIGNED
BOOL = frozenset({"bool"})
COMPUTE_DTYPE = {"float16": "float32"}  # storage dtype -> the dtype bodies compute in

Body = Callable[[ir.IRBuilder, list, Node, str, list], ir.Value]
"""(builder, operand values, node, kind of the data operand's dtype, operand dtypes) -> result value."""


@dataclass(frozen=True)
class Elementwise:
    dtypes: frozenset  # dtypes of the first input this kernel handles
    body: Body
    result: str | None = None  # output dtype when it is not the input's (comparisons: "bool")


def _f(value_type, x):
    return float_constant(value_type, x)


def _attr(node: Node, name: str, default: float) -> float:
    return float(node.attrs.get(name, default))


def _arith(float_op: str, int_op: str, uint_op: str | None = None) -> Body:
    def body(b, values, node, kind, dtypes):
        name = float_op if kind == "float" else (uint_op or int_op) if kind == "unsigned" else int_op
        return reduce(lambda x, y: getattr(b, name)(x, y), values)
    return body


def _relu(b, v, node, kind, dtypes):
    zero = ir.Constant(v[0].type, 0.0 if kind == "float" else 0)
    return select_max(b, v[0], zero, kind)


def _leaky_relu(b, v, node, kind, dtypes):
    x = v[0]
    negative = b.fmul(x, _f(x.type, _attr(node, "alpha", 0.01)))
    return b.select(b.fcmp_ordered("<", x, _f(x.type, 0)), negative, x)


def _elu(b, v, node, kind, dtypes):
    x = v[0]
    alpha = _f(x.type, _attr(node, "alpha", 1.0))
    negative = b.fmul(alpha, b.fsub(exp(b, x), _f(x.type, 1)))
    return b.select(b.fcmp_ordered("<", x, _f(x.type, 0)), negative, x)


def _selu(b, v, node, kind, dtypes):
    x = v[0]
    alpha, gamma = _f(x.type, _attr(node, "alpha", 1.67326319217681884765625)), _f(x.type, _attr(node, "gamma", 1.05070102214813232421875))
    negative = b.fmul(alpha, b.fsub(exp(b, x), _f(x.type, 1)))
    return b.fmul(gamma, b.select(b.fcmp_ordered("<=", x, _f(x.type, 0)), negative, x))


def _hard_sigmoid(b, v, node, kind, dtypes, alpha=None, beta=None):
    x = v[0]
    alpha = _attr(node, "alpha", 0.2) if alpha is None else alpha
    beta = _attr(node, "beta", 0.5) if beta is None else beta
    y = b.fadd(b.fmul(x, _f(x.type, alpha)), _f(x.type, beta))
    return select_min(b, select_max(b, y, _f(x.type, 0), "float"), _f(x.type, 1), "float")


def _hard_swish(b, v, node, kind, dtypes):
    return b.fmul(v[0], _hard_sigmoid(b, v, node, kind, dtypes, alpha=1 / 6, beta=0.5))


def _clip(b, v, node, kind, dtypes):
    x = v[0]
    if len(v) > 1 and v[1] is not None:
        x = select_max(b, x, v[1], kind)
    if len(v) > 2 and v[2] is not None:
        x = select_min(b, x, v[2], kind)
    return x


def _softplus(b, v, node, kind, dtypes):
    return log(b, b.fadd(exp(b, v[0]), _f(v[0].type, 1)))


def _softsign(b, v, node, kind, dtypes):
    return b.fdiv(v[0], b.fadd(_f(v[0].type, 1), intrinsic(b, "fabs", v[0])))


def _prelu(b, v, node, kind, dtypes):
    x, slope = v
    return b.select(b.fcmp_ordered("<", x, _f(x.type, 0)), b.fmul(x, slope), x)


def _mean(b, v, node, kind, dtypes):
    return b.fdiv(reduce(b.fadd, v), _f(v[0].type, len(v)))


def _compare(op: str) -> Body:
    def body(b, v, node, kind, dtypes):
        if kind == "float":
            result = b.fcmp_ordered(op, v[0], v[1])
        elif kind == "unsigned" or kind == "bool":
            result = b.icmp_unsigned(op, v[0], v[1])
        else:
            result = b.icmp_signed(op, v[0], v[1])
        return b.zext(result, I8)
    return body


def _where(b, v, node, kind, dtypes):
    return b.select(b.icmp_unsigned("!=", v[0], ir.Constant(I8, 0)), v[1], v[2])


def _unary(name: str, libm_call: bool = False) -> Body:
    return lambda b, v, node, kind, dtypes: (libm if libm_call else intrinsic)(b, name, v[0])


def _vector(function: Callable[[ir.IRBuilder, ir.Value], ir.Value]) -> Body:
    """A vector_math function of the one operand (vectorized in float32)."""
    return lambda b, v, node, kind, dtypes: function(b, v[0])


def _abs(b, v, node, kind, dtypes):
    if kind == "float":
        return intrinsic(b, "fabs", v[0])
    if kind == "unsigned":
        return v[0]
    return b.select(b.icmp_signed("<", v[0], ir.Constant(v[0].type, 0)), b.neg(v[0]), v[0])


def _neg(b, v, node, kind, dtypes):
    return b.fneg(v[0]) if kind == "float" else b.neg(v[0])


OPS: dict[str, Elementwise] = {
    "Add": Elementwise(NUMBERS, _arith("fadd", "add")),
    "Sub": Elementwise(NUMBERS, _arith("fsub", "sub")),
    "Mul": Elementwise(NUMBERS, _arith("fmul", "mul")),
    "Div": Elementwise(NUMBERS, divide),
    "Sum": Elementwise(NUMBERS, _arith("fadd", "add")),
    "Mean": Elementwise(FLOATS, _mean),
    "Max": Elementwise(NUMBERS, lambda b, v, n, k, d: reduce(lambda x, y: select_max(b, x, y, k), v)),
    "Min": Elementwise(NUMBERS, lambda b, v, n, k, d: reduce(lambda x, y: select_min(b, x, y, k), v)),
    "Pow": Elementwise(NUMBERS, power),
    "PRelu": Elementwise(FLOATS, _prelu),
    "Relu": Elementwise(FLOATS | SIGNED, _relu),
    "LeakyRelu": Elementwise(FLOATS, _leaky_relu),
    "Elu": Elementwise(FLOATS, _elu),
    "Selu": Elementwise(FLOATS, _selu),
    "HardSigmoid": Elementwise(FLOATS, _hard_sigmoid),
    "HardSwish": Elementwise(FLOATS, _hard_swish),
    "Clip": Elementwise(NUMBERS, _clip),
    "Sigmoid": Elementwise(FLOATS, _vector(sigmoid)),
    "Softplus": Elementwise(FLOATS, _softplus),
    "Softsign": Elementwise(FLOATS, _softsign),
    "Neg": Elementwise(FLOATS | SIGNED, _neg),
    "Abs": Elementwise(NUMBERS, _abs),
    "Sqrt": Elementwise(FLOATS, _unary("sqrt")),
    "Exp": Elementwise(FLOATS, _vector(exp)),
    "Log": Elementwise(FLOATS, _vector(log)),
    "Floor": Elementwise(FLOATS, _unary("floor")),
    "Ceil": Elementwise(FLOATS, _unary("ceil")),
    "Round": Elementwise(FLOATS, _unary("roundeven")),
    "Sin": Elementwise(FLOATS, _unary("sin")),
    "Cos": Elementwise(FLOATS, _unary("cos")),
    "Tan": Elementwise(FLOATS, _unary("tan", libm_call=True)),
    "Tanh": Elementwise(FLOATS, _vector(tanh)),
    "Acos": Elementwise(FLOATS, _unary("acos", libm_call=True)),
    "Asin": Elementwise(FLOATS, _unary("asin", libm_call=True)),
    "Atan": Elementwise(FLOATS, _unary("atan", libm_call=True)),
    "Sinh": Elementwise(FLOATS, _unary("sinh", libm_call=True)),
    "Cosh": Elementwise(FLOATS, _unary("cosh", libm_call=True)),
    "Asinh": Elementwise(FLOATS, _unary("asinh", libm_call=True)),
    "Acosh": Elementwise(FLOATS, _unary("acosh", libm_call=True)),
    "Atanh": Elementwise(FLOATS, _unary("atanh", libm_call=True)),
    "Erf": Elementwise(FLOATS, _vector(erf)),
    "Sign": Elementwise(NUMBERS, sign),
    "Shrink": Elementwise(NUMBERS, shrink),
    "IsInf": Elementwise(FLOATS, is_inf, result="bool"),
    "IsNaN": Elementwise(FLOATS, is_nan, result="bool"),
    "Reciprocal": Elementwise(FLOATS, lambda b, v, n, k, d: b.fdiv(_f(v[0].type, 1), v[0])),
    "Equal": Elementwise(NUMBERS | BOOL, _compare("=="), result="bool"),
    "Less": Elementwise(NUMBERS, _compare("<"), result="bool"),
    "LessOrEqual": Elementwise(NUMBERS, _compare("<="), result="bool"),
    "Greater": Elementwise(NUMBERS, _compare(">"), result="bool"),
    "GreaterOrEqual": Elementwise(NUMBERS, _compare(">="), result="bool"),
    "And": Elementwise(BOOL, lambda b, v, n, k, d: b.and_(v[0], v[1])),
    "Or": Elementwise(BOOL, lambda b, v, n, k, d: b.or_(v[0], v[1])),
    "Xor": Elementwise(BOOL, lambda b, v, n, k, d: b.xor(v[0], v[1])),
    "Not": Elementwise(BOOL, lambda b, v, n, k, d: b.xor(v[0], ir.Constant(I8, 1))),
    "Where": Elementwise(BOOL, _where),
    "BitShift": Elementwise(SIGNED | UNSIGNED, bit_shift),
    "BitwiseAnd": Elementwise(SIGNED | UNSIGNED, lambda b, v, n, k, d: b.and_(v[0], v[1])),
    "BitwiseOr": Elementwise(SIGNED | UNSIGNED, lambda b, v, n, k, d: b.or_(v[0], v[1])),
    "BitwiseXor": Elementwise(SIGNED | UNSIGNED, lambda b, v, n, k, d: b.xor(v[0], v[1])),
    "BitwiseNot": Elementwise(SIGNED | UNSIGNED, lambda b, v, n, k, d: b.not_(v[0])),
    "Mod": Elementwise(NUMBERS, mod),
}


def op_problem(node: Node, dtypes: list) -> str | None:
    """Why `node` (an OPS op) with input dtypes `dtypes` (None where absent) is not compiled; None when it is."""
    return elementwise_problem(node, dtypes, OPS[node.op_type].dtypes, NUMBERS, "cpu")


def _check(graph: Graph, node: Node) -> str | None:
    return op_problem(node, [None if t is None else t.dtype for t in graph.input_types(node)])


def _input_shapes(graph: Graph, node: Node) -> list:
    return [t.shape for t in graph.input_types(node) if t is not None]


def _work_items(graph: Graph, node: Node) -> int:
    return row_count(node.outputs[0].shape, _input_shapes(graph, node))


def apply_op(builder: ir.IRBuilder, node: Node, values: list, stored: list, out_dtype: str) -> ir.Value:
    """`node`'s op on one element: `values` (None where an optional input is absent) hold `stored`
    dtypes. float16 is computed in float32 and rounded back once, as numpy does for float16 math."""
    present = [dtype for value, dtype in zip(values, stored) if value is not None]
    dtypes = [COMPUTE_DTYPE.get(dtype, dtype) for dtype in present]
    kind = kind_of(dtypes[-1] if node.op_type == "Where" else dtypes[0])
    widened = [None if value is None else convert(builder, value, dtype, COMPUTE_DTYPE.get(dtype, dtype))
               for value, dtype in zip(values, stored)]
    result = OPS[node.op_type].body(builder, widened, node, kind, dtypes)
    return convert(builder, result, COMPUTE_DTYPE.get(out_dtype, out_dtype), out_dtype)


def _emit(ctx: KernelContext) -> None:
    stored = [None if arg is None else arg.dtype for arg in ctx.inputs]

    def body(builder, values):
        loaded = iter(values)
        positional = [None if dtype is None else next(loaded) for dtype in stored]  # absent inputs stay None
        return apply_op(builder, ctx.node, positional, stored, ctx.outputs[0].dtype)

    emit_broadcast_loop(ctx, [arg for arg in ctx.inputs if arg is not None], ctx.outputs[0], body)


register_kernel(KernelSpec(tuple(OPS), _check, _work_items, _emit, in_place=same_shape_input,
                           batch_items=lambda graph, node, bound: batch_row_items(
                               node.outputs[0].shape, _input_shapes(graph, node), bound)))
