"""exp, log, tanh, erf and sigmoid for kernels; float32 as branch-free arithmetic that LLVM vectorizes.

libm's expf, logf, tanhf and erff are opaque calls: a loop that calls one per element runs one
element at a time (Gelu's Erf form ran slower fused than unfused because of it). In float32 each
function here is a range reduction and a minimax polynomial, with the edge cases (infinities,
NaN, denormals, overflow) picked by selects, so a loop body has no calls and no branches and LLVM
turns it into vector code. The coefficients were fitted for this module by a Remez exchange in
float64 (relative error on the stated interval; absolute error of erf for its large branch) and
rounded to float32; Horner steps use llvm.fmuladd, an fma where the CPU has one.

Max errors against float64 over a dense sweep of 2.3 million values with the edge values, as
tests/codegen/test_vector_math.py measures them (it allows 1.5, 2, 2, 2.5 and 3 ulp): exp 1.0 ulp,
log 1.7, tanh 1.5, erf 2.3, sigmoid 2.7; infinities, NaN, signed zeros, overflow to inf and
underflow through the denormals as float64 rounded. float64 keeps llvm.exp/llvm.log and libm.
"""

from __future__ import annotations

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, I32
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic, libm

# exp(r) on |r| <= ln2/2, degree 6, relative error 1.9e-9.
EXP = (1.0, 1.0, 0.49999991059303284, 0.16666419804096222, 0.04166822507977486, 0.008374824188649654,
       0.0013836835278198123)
# log1p(f) / f on |f| <= 1/3, degree 8, relative error 2.6e-8.
LOG = (1.0, -0.4999993145465851, 0.3333316743373871, -0.2500803768634796, 0.20011959969997406,
       -0.16412566602230072, 0.13987384736537933, -0.15404543280601501, 0.14057499170303345)
# tanh(x) / x as a polynomial in x * x, |x| < TANH_SMALL, relative error 9.4e-10.
TANH = (1.0, -0.3333331048488617, 0.13332457840442657, -0.053842369467020035, 0.021038243547081947,
        -0.006233461666852236)
TANH_SMALL = 0.55
# erf(x) / x as a polynomial in x * x, |x| < ERF_SMALL, relative error 1.2e-9.
ERF = (1.1283791065216064, -0.3761262595653534, 0.1128358393907547, -0.026853766292333603,
       0.005188231822103262, -0.000800926994998008, 7.85053925937973e-05)
ERF_SMALL = 1.0
# log(erfc(a)) + a * a on ERF_SMALL <= a <= ERF_ONE, absolute error of erf 1.0e-9.
ERFC = (-0.00035158038372173905, -1.127048373222351, 0.36178767681121826, -0.10304853320121765,
        0.02181045152246952, -0.0029408398550003767, 0.00018569458916317672)
ERF_ONE = 4.0  # erf(a) rounds to 1 in float32 from a = 3.92 on

LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 0.693359375, -2.1219444005469057e-4  # LN2_HI has 9 significant bits: n * LN2_HI is exact
EXP_LOW, EXP_HIGH = -104.0, 89.0  # exp is 0 below (under half the least denormal) and inf above
ROUNDING_SHIFT = 12582912.0  # 1.5 * 2**23: adding it rounds a float below 2**22 to an integer, kept in the low bits
FLOAT_MIN = 2.0 ** -126  # the least normal float32
TWO_THIRDS_BITS = 0x3F2AAAAB  # float32 bits of 2/3 (rounded up): log splits x into 2**e * m, m in [2/3, 4/3)


def _f(value: float) -> ir.Constant:
    return float_constant(F32, value)


def _i(value: int) -> ir.Constant:
    return ir.Constant(I32, value)


def _polynomial(b: ir.IRBuilder, x: ir.Value, coefficients: tuple[float, ...]) -> ir.Value:
    """c0 + c1 x + c2 x**2 + ... by Horner's rule."""
    result = _f(coefficients[-1])
    for coefficient in reversed(coefficients[:-1]):
        result = intrinsic(b, "fmuladd", result, x, _f(coefficient))
    return result


def _is_nan(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return b.fcmp_unordered("uno", x, x)


def _power_of_two(b: ir.IRBuilder, exponent: ir.Value) -> ir.Value:
    """2**exponent for an i32 exponent in the normal range [-126, 127]."""
    return b.bitcast(b.shl(b.add(exponent, _i(127)), _i(23)), F32)


def _exp32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """x = n ln2 + r, exp(x) = 2**n exp(r); 2**n is applied as two normal factors so that results in
    the denormal range are rounded once, and inf comes out of the multiplication itself. A NaN passes
    the clamps and stays NaN through the arithmetic (the exponent bits it gives are never poison).
    Below EXP_LOW (a masked score's -inf or -10000, say) the result is 0 by a select: computing it
    would underflow in the last multiply, which costs a microcode assist per element on x86."""
    vanishes = b.fcmp_ordered("<", x, _f(EXP_LOW))
    clamped = b.select(vanishes, _f(0.0), x)
    clamped = b.select(b.fcmp_ordered(">", clamped, _f(EXP_HIGH)), _f(EXP_HIGH), clamped)
    shifted = b.fadd(b.fmul(clamped, _f(LOG2E)), _f(ROUNDING_SHIFT))
    n = b.fsub(shifted, _f(ROUNDING_SHIFT))
    reduced = intrinsic(b, "fmuladd", n, _f(-LN2_HI), clamped)
    reduced = intrinsic(b, "fmuladd", n, _f(-LN2_LO), reduced)
    exponent = b.sub(b.bitcast(shifted, I32), b.bitcast(_f(ROUNDING_SHIFT), I32))  # n in [-150, 128]
    half = b.ashr(exponent, _i(1))
    result = b.fmul(b.fmul(_polynomial(b, reduced, EXP), _power_of_two(b, half)),
                    _power_of_two(b, b.sub(exponent, half)))
    return b.select(vanishes, _f(0.0), result)


def _log32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """x = 2**e m with m in [2/3, 4/3) read from the bits (denormals scaled by 2**23 first),
    log(x) = e ln2 + log1p(m - 1); m - 1 is exact."""
    tiny = b.fcmp_ordered("<", x, _f(FLOAT_MIN))
    bits = b.bitcast(b.select(tiny, b.fmul(x, _f(2.0 ** 23)), x), I32)
    exponent = b.ashr(b.sub(bits, _i(TWO_THIRDS_BITS)), _i(23))
    fraction = b.fsub(b.bitcast(b.sub(bits, b.shl(exponent, _i(23))), F32), _f(1.0))
    e = b.sitofp(b.sub(exponent, b.select(tiny, _i(23), _i(0))), F32)
    log1p = b.fmul(fraction, _polynomial(b, fraction, LOG))
    result = intrinsic(b, "fmuladd", e, _f(LN2_HI), intrinsic(b, "fmuladd", e, _f(LN2_LO), log1p))
    result = b.select(b.fcmp_ordered("==", x, _f(float("inf"))), x, result)
    result = b.select(b.fcmp_ordered("==", x, _f(0.0)), _f(float("-inf")), result)
    return b.select(b.fcmp_unordered("<", x, _f(0.0)), _f(float("nan")), result)  # negative or NaN


def _tanh32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """x P(x**2) near 0; 1 - 2 / (exp(2|x|) + 1) with x's sign further out (inf gives 1, NaN stays NaN)."""
    magnitude = intrinsic(b, "fabs", x)
    small = b.fmul(x, _polynomial(b, b.fmul(x, x), TANH))
    denominator = b.fadd(_exp32(b, b.fmul(magnitude, _f(2.0))), _f(1.0))
    large = intrinsic(b, "copysign", b.fsub(_f(1.0), b.fdiv(_f(2.0), denominator)), x)
    return b.select(b.fcmp_ordered("<", magnitude, _f(TANH_SMALL)), small, large)


def _erf32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """x P(x**2) near 0; 1 - exp(Q(a) - a**2) with x's sign for a = |x| further out (erfc = exp(log erfc))."""
    magnitude = intrinsic(b, "fabs", x)
    small = b.fmul(x, _polynomial(b, b.fmul(x, x), ERF))
    a = b.select(b.fcmp_ordered("<", magnitude, _f(ERF_ONE)), magnitude, _f(ERF_ONE))
    log_erfc = intrinsic(b, "fmuladd", b.fneg(a), a, _polynomial(b, a, ERFC))
    large = intrinsic(b, "copysign", b.fsub(_f(1.0), _exp32(b, log_erfc)), x)
    result = b.select(b.fcmp_ordered("<", magnitude, _f(ERF_SMALL)), small, large)
    return b.select(_is_nan(b, x), x, result)


def exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _exp32(b, x) if x.type == F32 else intrinsic(b, "exp", x)


def log(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _log32(b, x) if x.type == F32 else intrinsic(b, "log", x)


def tanh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _tanh32(b, x) if x.type == F32 else libm(b, "tanh", x)


def erf(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _erf32(b, x) if x.type == F32 else libm(b, "erf", x)


def sigmoid(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1 / (1 + e) for x >= 0, e / (1 + e) below, e = exp(-|x|): no overflow, and tiny results keep
    their precision down to the denormals."""
    one = float_constant(x.type, 1.0)
    e = exp(b, b.fneg(intrinsic(b, "fabs", x)))
    positive = b.fdiv(one, b.fadd(one, e))
    return b.select(b.fcmp_ordered(">=", x, float_constant(x.type, 0.0)), positive, b.fmul(e, positive))
