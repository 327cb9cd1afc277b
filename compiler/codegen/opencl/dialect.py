"""The OpenCL C dialect: how IR dtypes, literals, conversions and helper functions are spelled.

Every dialect detail lives here, so kernel templates and the expression renderer never spell a
C type or a literal themselves. One dialect instance serves one program: it collects the helper
functions the kernels call and whether half precision is used, and `prelude()` emits them once.

Values are stored in their dtype's C type and computed in a wider "compute" dtype where C would
otherwise do it implicitly or not at all: float16 and bfloat16 are stored as their 16 bits in a
ushort and computed in float (converted by integer bit arithmetic, rounding to nearest even), so
no device extension is needed; 2/4/8/16-bit integers in 32 bits (the store truncates, which is
the wrap-around numpy gives). float64 is double throughout, which needs the device's cl_khr_fp64
(OpenCL 1.2 makes it optional).
"""

from __future__ import annotations

import numpy as np

STORAGE_TYPES = {
    "float64": "double", "float32": "float", "float16": "ushort", "bfloat16": "ushort",
    "int8": "char", "int16": "short", "int32": "int", "int64": "long",
    "uint8": "uchar", "uint16": "ushort", "uint32": "uint", "uint64": "ulong",
    "bool": "uchar",
    "int4": "uchar", "uint4": "uchar", "int2": "uchar", "uint2": "uchar",
}
COMPUTE_DTYPES = {"float16": "float32", "bfloat16": "float32", "int8": "int32", "int16": "int32", "uint8": "uint32",
                  "uint16": "uint32", "int4": "int32", "int2": "int32", "uint4": "uint32", "uint2": "uint32"}
# int4/uint4/int2/uint2, one element per byte in its low bits as ml_dtypes stores them: dtype -> (bits, signed).
# Data movement, Cast and Quantize/DequantizeLinear take them; a store wraps into the low bits.
NARROW_INTS = {"int4": (4, True), "uint4": (4, False), "int2": (2, True), "uint2": (2, False)}
HALVES = frozenset({"float16", "bfloat16"})  # 16-bit floats stored as ushort bits
SINGLE = frozenset({"float32"}) | HALVES  # floats computed in float
FLOATS = SINGLE | {"float64"}
SIGNED = frozenset({"int8", "int16", "int32", "int64"})
UNSIGNED = frozenset({"uint8", "uint16", "uint32", "uint64"})
EXTENSIONS = {"float64": "cl_khr_fp64"}  # what storing the dtype needs
WIDTHS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}

# Half-float bits <-> float (name, definition) in integer arithmetic, rounding to nearest even and
# keeping NaN a NaN. Not vload_half/vstore_half through a private variable: PoCL loses such values
# in kernels with barriers (the GEMM).
HALF_LOADS = {
    "float16": ("kiln_half_to_float", "inline float kiln_half_to_float(ushort h) { "
                "const uint sign = (uint)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF; "
                "if (exponent == 0x1F) return as_float(sign | 0x7F800000 | (mantissa << 13)); "
                "if (exponent == 0) return as_float(sign | as_uint((float)mantissa * 0x1p-24f)); "
                "return as_float(sign | ((exponent + 112) << 23) | (mantissa << 13)); }\n"),
    "bfloat16": ("kiln_bfloat16_to_float", "inline float kiln_bfloat16_to_float(ushort h) "
                 "{ return as_float((uint)h << 16); }\n"),
}
HALF_STORES = {
    "float16": ("kiln_float_to_half", "inline ushort kiln_float_to_half(float x) { "
                "const uint u = as_uint(x), sign = (u >> 16) & 0x8000, a = u & 0x7FFFFFFF; "
                "if (a > 0x7F800000) return (ushort)(sign | 0x7E00 | ((a >> 13) & 0x3FF)); "
                "if (a >= 0x477FF000) return (ushort)(sign | 0x7C00); "
                "if (a < 0x38800000) return (ushort)(sign | (uint)rint(as_float(a) * 0x1p24f)); "
                "return (ushort)(sign | ((a - 0x38000000 + 0xFFF + ((a >> 13) & 1)) >> 13)); }\n"),
    "bfloat16": ("kiln_float_to_bfloat16", "inline ushort kiln_float_to_bfloat16(float x) { uint u = as_uint(x); "
                 "return isnan(x) ? (ushort)((u >> 16) | 0x40) : (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16); }\n"),
}


def kind_of(dtype: str) -> str:
    """float, signed, unsigned or bool."""
    if dtype in FLOATS:
        return "float"
    if dtype in SIGNED:
        return "signed"
    if dtype in UNSIGNED:
        return "unsigned"
    if dtype == "bool":
        return "bool"
    raise ValueError(f"dtype {dtype} has no OpenCL C type here")


def compute_dtype(dtype: str) -> str:
    return COMPUTE_DTYPES.get(dtype, dtype)


class OpenCLDialect:
    """OpenCL C 1.2 spelling, plus the helper functions and extensions one program needs."""

    build_options = "-cl-std=CL1.2"

    def __init__(self):
        self._helpers: dict[str, str] = {}
        self._extensions: set[str] = set()

    def _uses(self, dtype: str) -> None:
        if dtype in EXTENSIONS:
            self._extensions.add(EXTENSIONS[dtype])

    # ----- types and literals -------------------------------------------------------------
    def type(self, dtype: str) -> str:
        """The C type that stores `dtype` in buffers."""
        self._uses(dtype)
        return STORAGE_TYPES[dtype]

    def compute_type(self, dtype: str) -> str:
        """The C type values of `dtype` are computed in."""
        self._uses(compute_dtype(dtype))
        return STORAGE_TYPES[compute_dtype(dtype)]

    def literal(self, value, dtype: str) -> str:
        """`value` as a C literal of compute dtype of `dtype` (inf and NaN by name)."""
        dtype = compute_dtype(dtype)
        kind = kind_of(dtype)
        if kind == "float":
            value = np.float64(value) if dtype == "float64" else np.float32(value)
            if np.isnan(value):
                return "NAN"
            if np.isinf(value):
                return "INFINITY" if value > 0 else "(-INFINITY)"
            return repr(float(value)) if dtype == "float64" else f"{value}f"
        if kind == "bool":
            return "1" if value else "0"
        value = int(value)
        if kind == "unsigned":
            return f"{value}U" + ("L" if dtype == "uint64" else "")
        if value == -(1 << (WIDTHS[dtype] - 1)):  # the smallest value has no literal of its own
            return f"({value + 1}{'L' if dtype == 'int64' else ''} - 1)"
        return f"{value}L" if dtype == "int64" else str(value)

    def convert(self, expr: str, source: str, target: str) -> str:
        """`expr` (of C type for `source`) as `target`: float to integer truncates toward zero and
        saturates (NaN gives 0), anything to bool is `!= 0`."""
        if source == target:
            return expr
        if source in NARROW_INTS:
            return self.convert(self._widen_narrow(expr, source), compute_dtype(source), target)
        if target in NARROW_INTS:
            return f"((uchar)({self.convert(expr, source, 'int32')}) & {(1 << NARROW_INTS[target][0]) - 1})"
        if source in HALVES:
            return self.convert(self.call(*HALF_LOADS[source], expr), "float32", target)
        if target in HALVES:
            return self.call(*HALF_STORES[target], self.convert(expr, source, "float32"))
        source_type, target_type = STORAGE_TYPES[source], STORAGE_TYPES[target]
        self._uses(target)
        if target == "bool":
            return f"(uchar)(({expr}) != 0)" if source != "bool" else expr
        if source_type == target_type:
            return expr
        if kind_of(source) == "float" and kind_of(target) in ("signed", "unsigned"):
            return f"convert_{target_type}_sat_rtz({expr})"
        return f"({target_type})({expr})"

    @staticmethod
    def _widen_narrow(expr: str, dtype: str) -> str:
        """A narrow int byte as the int32/uint32 of its value, whatever its unused bits hold."""
        bits, signed = NARROW_INTS[dtype]
        if signed:
            return f"((int)((char)(({expr}) << {8 - bits}) >> {8 - bits}))"
        return f"((uint)({expr}) & {(1 << bits) - 1}U)"

    def load(self, pointer: str, index: str, dtype: str) -> str:
        """Element `index` of buffer `pointer` of `dtype`, in its compute type."""
        return self.convert(f"{pointer}[{index}]", dtype, compute_dtype(dtype))

    def store_value(self, expr: str, dtype: str) -> str:
        """A compute-typed `expr` converted to store into a `dtype` buffer."""
        return self.convert(expr, compute_dtype(dtype), dtype)

    # ----- helpers --------------------------------------------------------------------------
    def helper(self, name: str, code: str) -> str:
        """Define helper function `name` (its full C definition) once per program; returns the name."""
        self._helpers.setdefault(name, code)
        return name

    def call(self, name: str, code: str, *args: str) -> str:
        return f"{self.helper(name, code)}({', '.join(args)})"

    def prelude(self) -> str:
        """What precedes the kernels: the extension pragmas and every helper a kernel called."""
        pragmas = "".join(f"#pragma OPENCL EXTENSION {name} : enable\n" for name in self.extensions())
        return pragmas + "\n".join(self._helpers.values())

    def extensions(self) -> list[str]:
        """OpenCL extensions the program needs from the device (half or double storage)."""
        return sorted(self._extensions)

    # ----- arithmetic that C leaves undefined -------------------------------------------------
    def wrapping(self, op: str, a: str, b: str, dtype: str) -> str:
        """a op b for + - *: signed integers go through their unsigned type, so overflow wraps as
        numpy's does instead of being undefined behaviour."""
        dtype = compute_dtype(dtype)
        if kind_of(dtype) != "signed":
            return f"({a} {op} {b})"
        signed, unsigned = STORAGE_TYPES[dtype], "u" + STORAGE_TYPES[dtype]
        return f"(({signed})(({unsigned})({a}) {op} ({unsigned})({b})))"

    def float_max(self, a: str, b: str, dtype: str = "float32") -> str:
        """max(a, b) where a NaN in either gives NaN (fmax would drop it; numpy and ONNX keep it)."""
        return self._float_pick("fmax", ">", a, b, dtype)

    def float_min(self, a: str, b: str, dtype: str = "float32") -> str:
        return self._float_pick("fmin", "<", a, b, dtype)

    def _float_pick(self, name: str, compare: str, a: str, b: str, dtype: str) -> str:
        ctype = self.compute_type(dtype)
        name = f"kiln_{name}" if ctype == "float" else f"kiln_{name}_{ctype}"
        return self.call(name, f"inline {ctype} {name}({ctype} a, {ctype} b) {{ return (a {compare} b || isnan(a)) ? a : b; }}\n",
                         a, b)

    def max(self, a: str, b: str, dtype: str) -> str:
        return self.float_max(a, b, dtype) if kind_of(dtype) == "float" else f"max({a}, {b})"

    def min(self, a: str, b: str, dtype: str) -> str:
        return self.float_min(a, b, dtype) if kind_of(dtype) == "float" else f"min({a}, {b})"

    def lowest(self, dtype: str) -> str:
        """The identity of max: -inf or the smallest integer."""
        kind = kind_of(dtype)
        if kind == "float":
            return "(-INFINITY)"
        return self.literal(np.iinfo(dtype).min if kind != "bool" else 0, dtype)

    def highest(self, dtype: str) -> str:
        kind = kind_of(dtype)
        if kind == "float":
            return "INFINITY"
        return self.literal(np.iinfo(dtype).max if kind != "bool" else 1, dtype)
