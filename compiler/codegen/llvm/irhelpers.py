"""Small llvmlite IRBuilder helpers: dtype mapping, counted loops, typed element access."""

from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
F16, F32, F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()

# IR dtype -> (LLVM element type, kind): kind is "float", "signed", "unsigned" or "bool", or for the
# narrow types "narrow_float"/"narrow_int": their element type is only their storage (one byte, bfloat16
# two), so kernels may move them but only kernels/narrow_types.py knows their values.
ELEMENT_TYPES = {
    "float32": (F32, "float"), "float64": (F64, "float"), "float16": (F16, "float"),
    "int8": (I8, "signed"), "int16": (I16, "signed"), "int32": (I32, "signed"), "int64": (I64, "signed"),
    "uint8": (I8, "unsigned"), "uint16": (I16, "unsigned"), "uint32": (I32, "unsigned"),
    "uint64": (I64, "unsigned"), "bool": (I8, "bool"),
    "bfloat16": (I16, "narrow_float"), "float8e4m3fn": (I8, "narrow_float"), "float8e4m3fnuz": (I8, "narrow_float"),
    "float8e5m2": (I8, "narrow_float"), "float8e5m2fnuz": (I8, "narrow_float"), "float8e8m0": (I8, "narrow_float"),
    "float4e2m1": (I8, "narrow_float"), "int4": (I8, "narrow_int"), "uint4": (I8, "narrow_int"),
    "int2": (I8, "narrow_int"), "uint2": (I8, "narrow_int"),
}


_FLOAT_BITS = {"float16": 16, "float32": 32, "float64": 64}


def element_type(dtype: str) -> ir.Type:
    return ELEMENT_TYPES[dtype][0]


def kind_of(dtype: str) -> str:
    return ELEMENT_TYPES[dtype][1]


def const_i64(value: int) -> ir.Constant:
    return ir.Constant(I64, int(value))


@contextmanager
def for_range(builder: ir.IRBuilder, start, stop, step: int = 1, name: str = "i"):
    """`for (i = start; i < stop; i += step)` with i64 bounds; yields the induction variable."""
    start = const_i64(start) if isinstance(start, int) else start
    stop = const_i64(stop) if isinstance(stop, int) else stop
    preheader = builder.block
    header = builder.append_basic_block(f"{name}.header")
    body = builder.append_basic_block(f"{name}.body")
    exit_block = builder.append_basic_block(f"{name}.exit")
    builder.branch(header)
    builder.position_at_end(header)
    index = builder.phi(I64, name=name)
    index.add_incoming(start, preheader)
    builder.cbranch(builder.icmp_signed("<", index, stop), body, exit_block)
    builder.position_at_end(body)
    yield index
    following = builder.add(index, const_i64(step), name=f"{name}.next", flags=["nsw"])
    index.add_incoming(following, builder.block)
    builder.branch(header)
    builder.position_at_end(exit_block)


def element_pointer(builder: ir.IRBuilder, base, dtype: str, index) -> ir.Value:
    """Pointer to element `index` (i64) of a `dtype` buffer starting at `base`."""
    return builder.gep(base, [index], source_etype=element_type(dtype), inbounds=True)


def load(builder: ir.IRBuilder, base, dtype: str, index) -> ir.Value:
    return builder.load(element_pointer(builder, base, dtype, index), typ=element_type(dtype))


def store(builder: ir.IRBuilder, value, base, dtype: str, index) -> None:
    builder.store(value, element_pointer(builder, base, dtype, index))


def convert(builder: ir.IRBuilder, value, source: str, target: str) -> ir.Value:
    """Numeric conversion between IR dtypes (C semantics: float->int truncates); narrow types go
    through kernels/narrow_types.cast instead."""
    if source == target:
        return value
    src_type, src_kind = ELEMENT_TYPES[source]
    dst_type, dst_kind = ELEMENT_TYPES[target]
    if src_kind.startswith("narrow") or dst_kind.startswith("narrow"):
        raise ValueError(f"convert() does not know {source} -> {target} values: use narrow_types.cast")
    if dst_kind == "bool":
        zero = ir.Constant(src_type, 0.0 if src_kind == "float" else 0)
        nonzero = builder.fcmp_unordered("!=", value, zero) if src_kind == "float" else builder.icmp_unsigned("!=", value, zero)
        return builder.zext(nonzero, I8)
    if src_kind == "float" and dst_kind == "float":
        widen = _FLOAT_BITS[source] < _FLOAT_BITS[target]
        return builder.fpext(value, dst_type) if widen else builder.fptrunc(value, dst_type)
    if src_kind == "float":
        return builder.fptosi(value, dst_type) if dst_kind == "signed" else builder.fptoui(value, dst_type)
    if dst_kind == "float":
        return builder.sitofp(value, dst_type) if src_kind == "signed" else builder.uitofp(value, dst_type)
    if src_type.width == dst_type.width:
        return value
    if src_type.width > dst_type.width:
        return builder.trunc(value, dst_type)
    return builder.sext(value, dst_type) if src_kind == "signed" else builder.zext(value, dst_type)
