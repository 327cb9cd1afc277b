"""Cast between any two dtypes, the narrow storage types included (ONNX Cast, numpy/ml_dtypes astype).

The narrow types - the float8 family, float8e8m0, float4e2m1, bfloat16, int4/uint4/int2/uint2 -
are stored as ml_dtypes stores them: one element per byte (bfloat16: two bytes; int4 and int2
in the low bits, the rest zero). Kernels that only move data move them as plain i8/i16; this
file holds the arithmetic a conversion needs. Narrow floats widen exactly to float32, and a
value reaches a narrow float through float32 (ml_dtypes rounds float64 and int64 through
float32 too) with round-to-nearest-even; narrow ints widen to (u)int8 and wrap on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, I1, I8, I32, I64, convert, element_type, kind_of
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic

SIGN32, INFINITY32, NAN32 = 0x80000000, 0x7F800000, 0x7FC00000  # float32 bits
ROUND_MODES = ("up", "down", "nearest")  # Cast's round_mode, for float8e8m0 targets
E8M0 = "float8e8m0"
FLOAT8 = ("float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz")  # the types Cast's saturate applies to


@dataclass(frozen=True)
class FloatFormat:
    """A float of 1 + exponent + mantissa bits with exponent `bias`. `specials` says how it writes
    infinity and NaN: "ieee" (all-ones exponent, as float32 does), "fn" (no infinity; the all-ones
    magnitude is NaN), "fnuz" (no infinity, no -0; the sign bit alone is NaN) or "finite" (neither)."""

    exponent: int
    mantissa: int
    bias: int
    specials: str

    @property
    def width(self) -> int:
        return 1 + self.exponent + self.mantissa

    @property
    def sign(self) -> int:
        return 1 << (self.exponent + self.mantissa)

    @property
    def infinity(self) -> int:
        return ((1 << self.exponent) - 1) << self.mantissa

    @property
    def nan(self) -> int:
        return {"ieee": self.infinity | 1 << (self.mantissa - 1), "fn": self.sign - 1, "fnuz": self.sign}[self.specials]

    @property
    def largest(self) -> int:
        """The bits of the largest finite magnitude."""
        return {"ieee": self.infinity - 1, "fn": self.sign - 2}.get(self.specials, self.sign - 1)

    @property
    def overflow(self) -> int:
        """What a magnitude past `largest` becomes when not saturating."""
        if self.specials == "ieee":
            return self.infinity
        return self.largest if self.specials == "finite" else self.nan


FLOATS = {
    "float8e4m3fn": FloatFormat(4, 3, 7, "fn"),
    "float8e4m3fnuz": FloatFormat(4, 3, 8, "fnuz"),
    "float8e5m2": FloatFormat(5, 2, 15, "ieee"),
    "float8e5m2fnuz": FloatFormat(5, 2, 16, "fnuz"),
    "float4e2m1": FloatFormat(2, 1, 1, "finite"),
    "bfloat16": FloatFormat(8, 7, 127, "ieee"),  # float32's top half: same exponent, so no rescaling
}
INTS = {"int4": (4, True), "uint4": (4, False), "int2": (2, True), "uint2": (2, False)}  # dtype -> (bits, signed)


def _i32(value: int) -> ir.Constant:
    return ir.Constant(I32, value)


def cast(builder: ir.IRBuilder, value: ir.Value, source: str, target: str,
         saturate: bool = True, round_mode: str = "up") -> ir.Value:
    """`value`, a `source` element, as a `target` element, as ONNX Cast (its reference: ml_dtypes'
    astype) computes it. `saturate` clamps float8 overflow to the largest finite value (else NaN or
    infinity); `round_mode` picks how float8e8m0 rounds."""
    if source == target:
        return value
    if source in INTS:
        value, source = _widen_int(builder, value, source)
    elif source in FLOATS or source == E8M0:
        value = _decode(builder, value, source)
        if source != "bfloat16" and kind_of(target) in ("signed", "unsigned", "narrow_int"):
            integer = "int32" if target in INTS else target
            value, source = _float_to_integer(builder, value, integer), integer
        else:
            source = "float32"
    if target in INTS:
        bits, _ = INTS[target]
        return builder.and_(_astype(builder, value, source, "int8"), ir.Constant(I8, (1 << bits) - 1))
    if target in FLOATS or target == E8M0:
        value = _astype(builder, value, source, "float32")
        if target == E8M0:
            return _encode_e8m0(builder, value, saturate, round_mode)
        return _encode(builder, value, target, saturate and target in FLOAT8)
    return _astype(builder, value, source, target)


def _astype(builder: ir.IRBuilder, value: ir.Value, source: str, target: str) -> ir.Value:
    """irhelpers.convert, except float -> int narrower than 32 bits goes through int32, float -> uint32
    through int64 and float -> uint64 through int64 below 2^63: what numpy's astype does on x86, so
    out-of-range values wrap the same way."""
    if kind_of(source) == "float" and target == "uint64":
        big = float_constant(value.type, 2.0 ** 63)
        low = convert(builder, value, source, "int64")
        high = builder.xor(convert(builder, builder.fsub(value, big), source, "int64"), ir.Constant(I64, -(1 << 63)))
        return builder.select(builder.fcmp_ordered(">=", value, big), high, low)
    if kind_of(source) == "float" and kind_of(target) in ("signed", "unsigned"):
        width = element_type(target).width
        via = "int32" if width < 32 else "int64" if target == "uint32" else None
        if via:
            value, source = convert(builder, value, source, via), via
    return convert(builder, value, source, target)


def _widen_int(builder: ir.IRBuilder, value: ir.Value, source: str) -> tuple[ir.Value, str]:
    """An int4/uint4/int2/uint2 byte as the int8/uint8 of the same value (whatever its unused bits hold)."""
    bits, signed = INTS[source]
    if signed:
        unused = ir.Constant(I8, 8 - bits)
        return builder.ashr(builder.shl(value, unused), unused), "int8"
    return builder.and_(value, ir.Constant(I8, (1 << bits) - 1)), "uint8"


def _float_to_integer(builder: ir.IRBuilder, value: ir.Value, target: str) -> ir.Value:
    """A float32 widened from a float8/float4 type as integer `target`, as ml_dtypes converts those:
    NaN is 0 and infinities the target's limits; finite values as numpy converts float32."""
    width, signed = element_type(target).width, kind_of(target) == "signed"
    integer = element_type(target)
    low, high = (ir.Constant(integer, -(1 << (width - 1))), ir.Constant(integer, (1 << (width - 1)) - 1)) if signed \
        else (ir.Constant(integer, 0), ir.Constant(integer, -1))
    result = _astype(builder, value, "float32", target)
    result = builder.select(builder.fcmp_ordered("==", value, float_constant(F32, float("inf"))), high, result)
    result = builder.select(builder.fcmp_ordered("==", value, float_constant(F32, float("-inf"))), low, result)
    return builder.select(builder.fcmp_unordered("uno", value, value), ir.Constant(integer, 0), result)


def _decode(builder: ir.IRBuilder, value: ir.Value, source: str) -> ir.Value:
    """A narrow float element as the float32 of the same value (NaN: a quiet NaN of the same sign)."""
    b, bits = builder, builder.zext(value, I32)
    if source == E8M0:  # an exponent alone: 2^(bits - 127); bits 0 is 2^-127, a float32 subnormal
        result = b.select(b.icmp_unsigned("==", bits, _i32(0)), _i32(1 << 22), b.shl(bits, _i32(23)))
        return b.bitcast(b.select(b.icmp_unsigned("==", bits, _i32(0xFF)), _i32(NAN32), result), F32)
    form = FLOATS[source]
    sign = b.shl(b.and_(bits, _i32(form.sign)), _i32(32 - form.width))
    magnitude = b.and_(bits, _i32(form.sign - 1))
    result = b.shl(magnitude, _i32(23 - form.mantissa))
    if form.bias != 127:
        # The fields now sit in float32's; scaling by 2^(127 - bias) fixes the exponent of normal and
        # subnormal values alike (a subnormal here is a float32 subnormal there).
        scaled = b.fmul(b.bitcast(result, F32), float_constant(F32, 2.0 ** (127 - form.bias)))
        result = b.bitcast(scaled, I32)
        if form.specials == "ieee":
            result = b.select(b.icmp_unsigned("==", magnitude, _i32(form.infinity)), _i32(INFINITY32), result)
            result = b.select(b.icmp_unsigned(">", magnitude, _i32(form.infinity)), _i32(NAN32), result)
        elif form.specials != "finite":
            nan = b.icmp_unsigned("==", magnitude if form.specials == "fn" else bits, _i32(form.nan))
            result = b.select(nan, _i32(NAN32), result)
    return b.bitcast(b.or_(result, sign), F32)


def _encode(builder: ir.IRBuilder, value: ir.Value, target: str, saturate: bool) -> ir.Value:
    """A float32 as the nearest `target` value (ties to even); overflow saturates or becomes
    infinity/NaN as `target` allows; NaN stays NaN (float4e2m1: a zero of the other sign, as ml_dtypes)."""
    b, bits, form = builder, builder.bitcast(value, I32), FLOATS[target]
    magnitude = b.and_(bits, _i32(SIGN32 - 1))
    dropped = 23 - form.mantissa
    odd = b.and_(b.lshr(magnitude, _i32(dropped)), _i32(1))
    rounded = b.lshr(b.add(magnitude, b.add(odd, _i32((1 << (dropped - 1)) - 1))), _i32(dropped))
    rounded = b.sub(rounded, _i32((127 - form.bias) << form.mantissa))
    if form.bias != 127:
        # Below the smallest normal, `form` is subnormal: count units of its smallest subnormal, ties to even.
        units = b.fmul(intrinsic(b, "fabs", value), float_constant(F32, 2.0 ** (form.bias - 1 + form.mantissa)))
        subnormal = b.fptoui(intrinsic(b, "roundeven", units), I32)
        rounded = b.select(b.icmp_unsigned("<", magnitude, _i32((128 - form.bias) << 23)), subnormal, rounded)
    too_big = b.icmp_unsigned(">", rounded, _i32(form.largest))
    rounded = b.select(too_big, _i32(form.largest if saturate else form.overflow), rounded)
    sign = b.and_(b.lshr(bits, _i32(32 - form.width)), _i32(form.sign))
    if form.specials == "fnuz":  # no negative zero: -0 (and what rounds to it) is +0
        sign = b.select(b.icmp_unsigned("==", rounded, _i32(0)), _i32(0), sign)
    nan = b.xor(sign, _i32(form.sign)) if form.specials == "finite" else b.or_(sign, _i32(form.nan))
    result = b.select(b.icmp_unsigned(">", magnitude, _i32(INFINITY32)), nan, b.or_(rounded, sign))
    return b.trunc(result, element_type(target))


def _encode_e8m0(builder: ir.IRBuilder, value: ir.Value, saturate: bool, round_mode: str) -> ir.Value:
    """float32 -> float8e8m0 as onnx.numpy_helper.to_float8e8m0 does: float32's exponent field, rounded
    by the mantissa (up, down or nearest), the sign dropped; NaN and infinity give NaN (0xFF)."""
    b, bits = builder, builder.bitcast(value, I32)
    exponent = b.and_(b.lshr(bits, _i32(23)), _i32(0xFF))
    if round_mode == "up":
        up = b.icmp_unsigned("!=", b.and_(bits, _i32(0x7FFFFF)), _i32(0))
    elif round_mode == "nearest":  # onnx's rule: the guard bit, and any lower bit or a nonzero exponent
        guard = b.icmp_unsigned("!=", b.and_(bits, _i32(1 << 22)), _i32(0))
        rest = b.icmp_unsigned("!=", b.and_(bits, _i32((1 << 22) - 1)), _i32(0))
        up = b.and_(guard, b.or_(rest, b.icmp_unsigned("!=", exponent, _i32(0))))
    else:
        up = ir.Constant(I1, 0)
    if saturate:
        up = b.and_(up, b.icmp_unsigned("!=", exponent, _i32(0xFE)))
    result = b.add(exponent, b.zext(up, I32))
    result = b.select(b.icmp_unsigned("==", exponent, _i32(0xFF)), _i32(0xFF), result)
    return b.trunc(result, I8)
