"""The one expression renderer: the elementwise body of an IR op as an OpenCL C expression.

`render(dialect, node, operands, dtypes)` returns the C expression computing one output element
from operand values already loaded in their compute types (dialect.compute_dtype); the kernel
converts it to the output's storage type. Operands are plain identifiers, so an expression may
name one several times. Coverage mirrors the cpu target's elementwise table
(compiler/codegen/llvm/kernels/elementwise.py) with the same edge semantics: NaN-propagating
max/min, integer division by 0 giving 0, shifts past the width giving 0, numpy's Mod signs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Callable

from compiler.codegen.elementwise_support import elementwise_problem
from compiler.codegen.opencl.dialect import FLOATS, SIGNED, SINGLE, STORAGE_TYPES, UNSIGNED, WIDTHS, OpenCLDialect, \
    compute_dtype, kind_of
from compiler.ir.graph import Node

NUMBERS = FLOATS | SIGNED | UNSIGNED
BOOL = frozenset({"bool"})


@dataclass(frozen=True)
class Operands:
    """What a body sees: the dialect, the node, operand identifiers and their storage dtypes
    (both None where an optional input is absent)."""

    dialect: OpenCLDialect
    node: Node
    values: list
    dtypes: list

    @property
    def dtype(self) -> str:
        """Compute dtype of the data operand (input 0)."""
        return compute_dtype(self.dtypes[0])

    @property
    def kind(self) -> str:
        return kind_of(self.dtypes[0])

    @property
    def ctype(self) -> str:
        return STORAGE_TYPES[self.dtype]

    def f(self, value: float) -> str:
        return self.dialect.literal(value, "float32")

    def attr(self, name: str, default: float) -> str:
        return self.f(float(self.node.attrs.get(name, default)))


Body = Callable[[Operands], str]


@dataclass(frozen=True)
class Elementwise:
    dtypes: frozenset  # storage dtypes of input 0 this body handles
    body: Body
    result: str | None = None  # output dtype when it is not the input's ("bool" for comparisons)


def _fold(op: str) -> Body:
    def body(o: Operands) -> str:
        present = [v for v in o.values if v is not None]
        return reduce(lambda a, b: o.dialect.wrapping(op, a, b, o.dtype), present)
    return body


def _variadic(pick: str) -> Body:
    def body(o: Operands) -> str:
        present = [v for v in o.values if v is not None]
        return reduce(lambda a, b: getattr(o.dialect, pick)(a, b, o.dtype), present)
    return body


def _unary(function: str) -> Body:
    return lambda o: f"{function}({o.values[0]})"


def _negate(o: Operands) -> str:
    x = o.values[0]
    return f"(-{x})" if o.kind == "float" else o.dialect.wrapping("-", "0", x, o.dtype)


def _abs(o: Operands) -> str:
    x = o.values[0]
    if o.kind == "float":
        return f"fabs({x})"
    return x if o.kind == "unsigned" else f"(({o.ctype})abs({x}))"


def _relu(o: Operands) -> str:
    x, zero = o.values[0], o.dialect.literal(0, o.dtype)
    return f"({x} < {zero} ? {zero} : {x})"


def _negative_branch(o: Operands, negative: str, compare: str = "<") -> str:
    x = o.values[0]
    return f"({x} {compare} 0.0f ? {negative} : {x})"


def _elu(o: Operands) -> str:
    return _negative_branch(o, f"{o.attr('alpha', 1.0)} * (exp({o.values[0]}) - 1.0f)")


def _selu(o: Operands) -> str:
    alpha, gamma = o.attr("alpha", 1.67326319217681884765625), o.attr("gamma", 1.05070102214813232421875)
    return f"({gamma} * {_negative_branch(o, f'{alpha} * (exp({o.values[0]}) - 1.0f)', '<=')})"


def _hard_sigmoid(o: Operands, alpha: str | None = None, beta: str | None = None) -> str:
    alpha = alpha or o.attr("alpha", 0.2)
    beta = beta or o.attr("beta", 0.5)
    d = o.dialect
    return d.float_min(d.float_max(f"({o.values[0]} * {alpha} + {beta})", "0.0f", o.dtype), "1.0f", o.dtype)


def _clip(o: Operands) -> str:
    x = o.values[0]
    if len(o.values) > 1 and o.values[1] is not None:
        x = o.dialect.max(x, o.values[1], o.dtype)
    if len(o.values) > 2 and o.values[2] is not None:
        x = o.dialect.min(x, o.values[2], o.dtype)
    return x


def _mean(o: Operands) -> str:
    present = [v for v in o.values if v is not None]
    return f"(({' + '.join(present)}) / {o.f(len(present))})"


def _compare(op: str) -> Body:
    return lambda o: f"({o.values[0]} {op} {o.values[1]})"


def _sign(o: Operands) -> str:
    x = o.values[0]
    if o.kind == "float":
        return f"(isnan({x}) ? {x} : ({o.ctype})(({x} > 0.0f) - ({x} < 0.0f)))"
    return f"(({o.ctype})(({x} > 0) - ({x} < 0)))"


def _shrink(o: Operands) -> str:
    x, bias, lambd = o.values[0], o.attr("bias", 0.0), float(o.node.attrs.get("lambd", 0.5))
    return f"({x} < {o.f(-lambd)} ? {x} + {bias} : ({x} > {o.f(lambd)} ? {x} - {bias} : 0.0f))"


def _is_inf(o: Operands) -> str:
    x = o.values[0]
    wanted = [f"{x} {sign} 0.0f" for attr, sign in (("detect_positive", ">"), ("detect_negative", "<"))
              if o.node.attrs.get(attr, 1)]
    return f"(isinf({x}) && ({' || '.join(wanted) or '0'}))"


def _integer_helper(o: Operands, name: str, body: str) -> str:
    """A per-type helper `kiln_<name>_<ctype>(x, y)` with `body` over T (the type) and U (unsigned T)."""
    ctype = o.ctype
    unsigned = ctype if o.kind == "unsigned" else "u" + ctype
    code = f"inline {ctype} kiln_{name}_{ctype}({ctype} x, {ctype} y) {{ {body} }}\n"
    code = code.replace("@T", ctype).replace("@U", unsigned)
    return o.dialect.call(f"kiln_{name}_{ctype}", code, o.values[0], o.values[1])


def _divide(o: Operands) -> str:
    """Integer x / 0 gives 0 and x / -1 gives -x (wrapping), where C would trap or overflow."""
    if o.kind == "float":
        return f"({o.values[0]} / {o.values[1]})"
    if o.kind == "unsigned":
        return _integer_helper(o, "div", "return y == 0 ? 0 : x / y;")
    return _integer_helper(o, "div", "return y == 0 ? 0 : y == -1 ? (@T)(0 - (@U)x) : x / y;")


def _mod(o: Operands) -> str:
    """fmod=1: C fmod (sign of the dividend); fmod=0: the sign of the divisor, as numpy.mod.
    An integer divisor of 0 (or -1, whose quotient can overflow) gives 0."""
    x, y = o.values[:2]
    fmod = o.node.attrs.get("fmod", 0)
    if o.kind == "float":
        if fmod:
            return f"fmod({x}, {y})"
        name = "kiln_fmod_numpy" + ("" if o.ctype == "float" else f"_{o.ctype}")
        code = (f"inline @T {name}(@T x, @T y) {{ @T r = fmod(x, y); if (r != 0 && ((y < 0) != (r < 0))) r += y; "
                "return r == 0 ? copysign((@T)0, y) : r; }\n").replace("@T", o.ctype)
        return o.dialect.call(name, code, x, y)
    if o.kind == "unsigned":
        return _integer_helper(o, "mod", "return y == 0 ? 0 : x % y;")
    if fmod:
        return _integer_helper(o, "fmod", "return (y == 0 || y == -1) ? 0 : x % y;")
    return _integer_helper(o, "mod", "if (y == 0 || y == -1) return 0; @T r = x % y; "
                                      "return (r != 0 && ((r ^ y) < 0)) ? r + y : r;")


def _power(o: Operands) -> str:
    """Float bases use pow; integer bases are exact (wrapping) for integer exponents, as numpy."""
    base, exponent = o.values[:2]
    exponent_dtype = compute_dtype(o.dtypes[1])
    if o.kind == "float":
        return f"pow({base}, {o.dialect.convert(exponent, exponent_dtype, o.dtype)})"
    if kind_of(exponent_dtype) == "float":
        return o.dialect.convert(f"pow(({STORAGE_TYPES[exponent_dtype]}){base}, {exponent})", exponent_dtype, o.dtype)
    ctype, etype = o.ctype, STORAGE_TYPES[exponent_dtype]
    unsigned = ctype if o.kind == "unsigned" else "u" + ctype
    negative = ("if (e < 0) return b == 1 ? 1 : b == -1 ? ((e & 1) ? -1 : 1) : 0; "
                if kind_of(exponent_dtype) == "signed" else "")
    name = f"kiln_ipow_{ctype}_{etype}"
    code = (f"inline {ctype} {name}({ctype} b, {etype} e) {{ {negative}{unsigned} r = 1, s = ({unsigned})b; "
            f"while (e) {{ if (e & 1) r *= s; s *= s; e >>= 1; }} return ({ctype})r; }}\n")
    return o.dialect.call(name, code, base, exponent)


def _bit_shift(o: Operands) -> str:
    """A shift by a negative amount or by the storage width or more gives 0, or -1 for a right
    shift of a negative value (onnx.reference); C leaves those undefined."""
    x, amount = o.values[:2]
    width = WIDTHS[o.dtypes[0]]
    unsigned = o.ctype if o.kind == "unsigned" else "u" + o.ctype
    outside = f"(({unsigned}){amount} >= {width}U)"
    if o.node.attrs["direction"] == "RIGHT":
        if o.kind == "signed":
            return f"({x} >> ({outside} ? {width - 1} : {amount}))"
        return f"({outside} ? 0 : {x} >> {amount})"
    return f"({outside} ? 0 : ({o.ctype})(({unsigned}){x} << {amount}))"


def _prelu(o: Operands) -> str:
    x, slope = o.values[:2]
    return f"({x} < 0.0f ? {x} * {slope} : {x})"


def _batch_normalization(o: Operands) -> str:
    """Inference form from the running statistics, as the reference computes it."""
    x, scale, bias, mean, var = o.values[:5]
    epsilon = o.attr("epsilon", 1e-5)
    return f"(({x} - {mean}) * ({scale} * (1.0f / sqrt({var} + {epsilon}))) + {bias})"


# QuantizeLinear output types: their value ranges
QUANTIZED = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
             "uint4": (0, 15), "int4": (-8, 7), "uint2": (0, 3), "int2": (-2, 1)}


def _quantize(o: Operands) -> str:
    """round_half_even(x / scale) + zero point, clamped to the output's range, in float (exact there);
    the store converts it to the integer type."""
    x, scale = o.values[:2]
    low, high = QUANTIZED[o.node.outputs[0].dtype]
    value = f"rint({x} / {scale})"
    if len(o.values) > 2 and o.values[2] is not None:
        value = f"({value} + (float){o.values[2]})"
    return f"clamp({value}, {o.f(low)}, {o.f(high)})"


def _dequantize(o: Operands) -> str:
    """(x - zero point) * scale, the difference exact in 64 bits."""
    x, scale = o.values[:2]
    if len(o.values) > 2 and o.values[2] is not None:
        x = f"((long){x} - (long){o.values[2]})"
    return f"((float){x} * {scale})"


F = FLOATS
OPS: dict[str, Elementwise] = {
    "Add": Elementwise(NUMBERS, _fold("+")),
    "Sub": Elementwise(NUMBERS, _fold("-")),
    "Mul": Elementwise(NUMBERS, _fold("*")),
    "Sum": Elementwise(NUMBERS, _fold("+")),
    "Div": Elementwise(NUMBERS, _divide),
    "Mean": Elementwise(F, _mean),
    "Max": Elementwise(NUMBERS, _variadic("max")),
    "Min": Elementwise(NUMBERS, _variadic("min")),
    "Pow": Elementwise(NUMBERS, _power),
    "PRelu": Elementwise(F, _prelu),
    "Relu": Elementwise(F | SIGNED, _relu),
    "LeakyRelu": Elementwise(F, lambda o: _negative_branch(o, f"{o.values[0]} * {o.attr('alpha', 0.01)}")),
    "Elu": Elementwise(F, _elu),
    "Selu": Elementwise(F, _selu),
    "HardSigmoid": Elementwise(F, _hard_sigmoid),
    "HardSwish": Elementwise(F, lambda o: f"({o.values[0]} * {_hard_sigmoid(o, o.f(1 / 6), o.f(0.5))})"),
    "Clip": Elementwise(NUMBERS, _clip),
    "Sigmoid": Elementwise(F, lambda o: f"(1.0f / (1.0f + exp(-{o.values[0]})))"),
    "Softplus": Elementwise(F, lambda o: f"log(exp({o.values[0]}) + 1.0f)"),
    "Softsign": Elementwise(F, lambda o: f"({o.values[0]} / (1.0f + fabs({o.values[0]})))"),
    "Neg": Elementwise(F | SIGNED, _negate),
    "Abs": Elementwise(NUMBERS, _abs),
    "Reciprocal": Elementwise(F, lambda o: f"(1.0f / {o.values[0]})"),
    "Sign": Elementwise(NUMBERS, _sign),
    "Shrink": Elementwise(F, _shrink),
    "IsInf": Elementwise(F, _is_inf, result="bool"),
    "IsNaN": Elementwise(F, lambda o: f"isnan({o.values[0]})", result="bool"),
    **{op: Elementwise(F, _unary(function)) for op, function in {
        "Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Floor": "floor", "Ceil": "ceil", "Round": "rint",
        "Sin": "sin", "Cos": "cos", "Tan": "tan", "Tanh": "tanh", "Acos": "acos", "Asin": "asin", "Atan": "atan",
        "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh", "Erf": "erf"}.items()},
    "Equal": Elementwise(NUMBERS | BOOL, _compare("=="), result="bool"),
    "Less": Elementwise(NUMBERS, _compare("<"), result="bool"),
    "LessOrEqual": Elementwise(NUMBERS, _compare("<="), result="bool"),
    "Greater": Elementwise(NUMBERS, _compare(">"), result="bool"),
    "GreaterOrEqual": Elementwise(NUMBERS, _compare(">="), result="bool"),
    "And": Elementwise(BOOL, lambda o: f"({o.values[0]} & {o.values[1]})"),
    "Or": Elementwise(BOOL, lambda o: f"({o.values[0]} | {o.values[1]})"),
    "Xor": Elementwise(BOOL, lambda o: f"({o.values[0]} ^ {o.values[1]})"),
    "Not": Elementwise(BOOL, lambda o: f"({o.values[0]} ^ 1)"),
    "Where": Elementwise(BOOL, lambda o: f"({o.values[0]} ? {o.values[1]} : {o.values[2]})"),
    "BitShift": Elementwise(SIGNED | UNSIGNED, _bit_shift),
    "BitwiseAnd": Elementwise(SIGNED | UNSIGNED, lambda o: f"({o.values[0]} & {o.values[1]})"),
    "BitwiseOr": Elementwise(SIGNED | UNSIGNED, lambda o: f"({o.values[0]} | {o.values[1]})"),
    "BitwiseXor": Elementwise(SIGNED | UNSIGNED, lambda o: f"({o.values[0]} ^ {o.values[1]})"),
    "BitwiseNot": Elementwise(SIGNED | UNSIGNED, lambda o: f"(~{o.values[0]})"),
    "Mod": Elementwise(NUMBERS, _mod),
    "BatchNormalization": Elementwise(F, _batch_normalization),
    "QuantizeLinear": Elementwise(SINGLE, _quantize, result="float32"),
    "DequantizeLinear": Elementwise(frozenset({*QUANTIZED, "int32"}), _dequantize, result="float32"),
}


def op_problem(node: Node, dtypes: list) -> str | None:
    """Why `node` (an OPS op) with input storage dtypes `dtypes` (None where absent) is not
    rendered; None when it is."""
    return elementwise_problem(node, dtypes, OPS[node.op_type].dtypes, NUMBERS, "gpu")


def result_dtype(node: Node, dtypes: list) -> str:
    """The storage dtype of the output (a comparison gives bool; Where gives its branches' dtype)."""
    op = OPS[node.op_type]
    if op.result:
        return op.result
    return dtypes[1] if node.op_type == "Where" else dtypes[0]


def render(dialect: OpenCLDialect, node: Node, values: list, dtypes: list) -> str:
    """The C expression of `node` over operand identifiers `values` (None where an optional input is
    absent) holding compute-typed values of storage dtypes `dtypes`."""
    return OPS[node.op_type].body(Operands(dialect, node, list(values), list(dtypes)))
