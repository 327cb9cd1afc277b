"""Elementwise bodies whose ONNX (numpy) semantics need care at the edges.

Integer division by 0 or -1, shifts past the bit width, negative integer powers and the
sign rules of Mod would trap the CPU or be poison in LLVM if emitted as one instruction;
here each gets the result onnx.reference gives, or a defined one where numpy has none.
Every body has the signature `(builder, values, node, kind, dtypes) -> value` of elementwise.py.
"""

from __future__ import annotations

from functools import reduce

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I1, I8, convert, kind_of
from compiler.codegen.llvm.kernels.math_functions import float_constant, float_to_int, intrinsic


def _integer_guard(b, divisor, kind):
    """(trap, safe divisor): a 0 divisor (or -1, whose signed quotient can overflow) would trap the CPU."""
    trap = b.icmp_unsigned("==", divisor, ir.Constant(divisor.type, 0))
    if kind == "signed":
        trap = b.or_(trap, b.icmp_signed("==", divisor, ir.Constant(divisor.type, -1)))
    return trap, b.select(trap, ir.Constant(divisor.type, 1), divisor)


def divide(b, v, node, kind, dtypes):
    """Float division, or integer division truncating toward zero; x / 0 gives 0 and x / -1 gives -x."""
    x, y = v
    if kind == "float":
        return b.fdiv(x, y)
    trap, safe = _integer_guard(b, y, kind)
    quotient = b.udiv(x, safe) if kind == "unsigned" else b.sdiv(x, safe)
    if kind == "unsigned":
        return b.select(trap, ir.Constant(x.type, 0), quotient)
    minus_one = b.icmp_signed("==", y, ir.Constant(y.type, -1))
    return b.select(trap, b.select(minus_one, b.neg(x), ir.Constant(x.type, 0)), quotient)


def mod(b, v, node, kind, dtypes):
    """fmod=1: C fmod (sign of the dividend); fmod=0: the sign of the divisor, as numpy.mod.

    An integer divisor of 0 (or -1, whose quotient can overflow) gives 0 instead of a CPU trap:
    bad data must never crash the process.
    """
    x, y = v
    if kind == "float":
        return _float_mod(b, x, y) if not node.attrs.get("fmod", 0) else b.frem(x, y)
    zero = ir.Constant(x.type, 0)
    trap, safe = _integer_guard(b, y, kind)
    remainder = b.urem(x, safe) if kind == "unsigned" else b.srem(x, safe)
    if kind == "signed" and not node.attrs.get("fmod", 0):
        signs_differ = b.icmp_signed("<", b.xor(remainder, safe), zero)
        adjust = b.and_(b.icmp_signed("!=", remainder, zero), signs_differ)
        remainder = b.select(adjust, b.add(remainder, safe), remainder)
    return b.select(trap, zero, remainder)


def _float_mod(b, x, y):
    """numpy's npy_divmod remainder: fmod moved into the divisor's sign; a zero result takes the divisor's sign."""
    zero = float_constant(x.type, 0)
    remainder = b.frem(x, y)  # NaN for y == 0 or x infinite, and stays NaN below
    signs_differ = b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", remainder, zero))
    adjust = b.and_(b.fcmp_ordered("!=", remainder, zero), signs_differ)
    remainder = b.select(adjust, b.fadd(remainder, y), remainder)
    signed_zero = intrinsic(b, "copysign", zero, y)
    return b.select(b.fcmp_ordered("==", remainder, zero), signed_zero, remainder)


def power(b, v, node, kind, dtypes):
    """Pow: float bases use llvm.pow; integer bases are exact (wrapping) for integer exponents, as numpy."""
    base, exponent = v
    exponent_kind = kind_of(dtypes[1])
    if kind == "float":
        return intrinsic(b, "pow", base, convert(b, exponent, dtypes[1], dtypes[0]))
    if exponent_kind == "float":  # numpy computes int ** float in float64, then casts back
        real = intrinsic(b, "pow", convert(b, base, dtypes[0], "float64"), convert(b, exponent, dtypes[1], "float64"))
        return float_to_int(b, real, base.type, signed=kind == "signed")
    return _integer_power(b, base, exponent, exponent_kind)


def _integer_power(b, base, exponent, exponent_kind):
    """Square-and-multiply over every exponent bit (branch-free, so the loop still vectorizes).

    numpy refuses negative integer exponents; here they give what C's (int)pow(x, y) does: the
    reciprocal truncated toward zero (1 for base 1, +-1 for base -1, else 0).
    """
    one = ir.Constant(base.type, 1)
    result, square = one, base
    for bit in range(exponent.type.width):
        bit_set = b.trunc(b.lshr(exponent, ir.Constant(exponent.type, bit)), I1)
        result = b.select(bit_set, b.mul(result, square), result)
        square = b.mul(square, square)
    if exponent_kind != "signed":
        return result
    odd = b.trunc(exponent, I1)
    minus_one = ir.Constant(base.type, -1)
    base_minus_one = b.select(odd, minus_one, one)
    reciprocal = b.select(b.icmp_signed("==", base, one), one,
                          b.select(b.icmp_signed("==", base, minus_one), base_minus_one, ir.Constant(base.type, 0)))
    return b.select(b.icmp_signed("<", exponent, ir.Constant(exponent.type, 0)), reciprocal, result)


def bit_shift(b, v, node, kind, dtypes):
    """A shift by a negative amount or by the bit width or more gives 0, or -1 for a right shift of a
    negative value (onnx.reference); LLVM's shl/lshr/ashr would give poison there."""
    x, amount = v
    width = ir.Constant(x.type, x.type.width)
    out_of_range = b.icmp_unsigned(">=", amount, width)  # negative amounts are huge unsigned
    zero = ir.Constant(x.type, 0)
    if node.attrs["direction"] == "RIGHT" and kind == "signed":
        return b.ashr(x, b.select(out_of_range, ir.Constant(x.type, x.type.width - 1), amount))
    safe = b.select(out_of_range, zero, amount)
    shifted = b.shl(x, safe) if node.attrs["direction"] == "LEFT" else b.lshr(x, safe)
    return b.select(out_of_range, zero, shifted)


def sign(b, v, node, kind, dtypes):
    """-1, 0 or 1 (NaN stays NaN and -0.0 gives 0.0, as numpy.sign)."""
    x = v[0]
    if kind == "unsigned":
        return b.zext(b.icmp_unsigned("!=", x, ir.Constant(x.type, 0)), x.type)
    if kind == "signed":
        zero = ir.Constant(x.type, 0)
        return b.sub(b.zext(b.icmp_signed(">", x, zero), x.type), b.zext(b.icmp_signed("<", x, zero), x.type))
    zero = float_constant(x.type, 0)
    positive = b.uitofp(b.fcmp_ordered(">", x, zero), x.type)
    negative = b.uitofp(b.fcmp_ordered("<", x, zero), x.type)
    return b.select(b.fcmp_unordered("uno", x, x), x, b.fsub(positive, negative))


def shrink(b, v, node, kind, dtypes):
    """x + bias below -lambd, x - bias above lambd, else 0; integers go through float64 as numpy does."""
    x = v[0] if kind == "float" else convert(b, v[0], dtypes[0], "float64")
    bias = float_constant(x.type, node.attrs.get("bias", 0.0))
    lambd = float(node.attrs.get("lambd", 0.5))
    above = b.select(b.fcmp_ordered(">", x, float_constant(x.type, lambd)), b.fsub(x, bias), float_constant(x.type, 0))
    result = b.select(b.fcmp_ordered("<", x, float_constant(x.type, -lambd)), b.fadd(x, bias), above)
    return result if kind == "float" else float_to_int(b, result, v[0].type, signed=kind == "signed")


def is_inf(b, v, node, kind, dtypes):
    x = v[0]
    wanted = [value for attr, value in (("detect_positive", float("inf")), ("detect_negative", float("-inf")))
              if node.attrs.get(attr, 1)]
    hits = [b.fcmp_ordered("==", x, float_constant(x.type, value)) for value in wanted]
    return b.zext(reduce(b.or_, hits, ir.Constant(I1, 0)), I8)


def is_nan(b, v, node, kind, dtypes):
    return b.zext(b.fcmp_unordered("uno", v[0], v[0]), I8)
