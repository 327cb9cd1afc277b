"""The int8 register tile under kiln::QuantizedConv / QuantizedMatMul, for each instruction set.

Both operands hold groups of 4 consecutive reduction steps (k) in one 32-bit lane. A tile is
`rows` broadcast rows by `vectors` vectors of `lanes` int32 sums: each step broadcasts the 4 bytes
of every row (one i32) and loads `vectors` vectors of 4 bytes per lane, and each accumulator takes
the lane-wise dot product of 4 u8 x s8 pairs. Which operand is unsigned is the caller's (Conv:
the activation vectors; MatMul: the broadcast activations). The sums are exact int32, so every
instruction set and every split of the work gives the same bits.

- avx512vnni: vpdpbusd on 512 bits (16 lanes), one instruction a dot product.
- avxvnni: vpdpbusd on 256 bits (AVX-VNNI, or AVX512-VNNI with AVX512VL).
- avx2: bytes widened to int16 and multiplied by vpmaddwd (pairs of products into int32: exact,
  where vpmaddubsw would saturate int16); each accumulator keeps the two pair sums of a lane in
  two registers until the end. Also the path of AVX-512 hosts without VNNI.
- portable: plain LLVM vector IR (widen, multiply, add the 4 products of a lane) for any target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, I8, I16, I32, I64, PTR, const_i64
from compiler.codegen.llvm.kernels.gemm_microkernel import carried_loop, splat
from compiler.codegen.llvm.machine import MachineSpec


@dataclass(frozen=True)
class Int8Isa:
    name: str
    lanes: int  # int32 sums per vector
    rows: int  # broadcast rows of a tile
    vectors: int  # vectors of a tile
    parts: int  # registers per accumulator

    @property
    def columns(self) -> int:
        return self.lanes * self.vectors


PANEL_BYTES = 1 << 19  # packed operands live on the stack (a thread has 2 MiB or more of it)

ISAS = {isa.name: isa for isa in (Int8Isa("avx512vnni", 16, 6, 4, 1), Int8Isa("avxvnni", 8, 6, 2, 1),
                                  Int8Isa("avx2", 8, 4, 1, 2), Int8Isa("portable", 4, 4, 2, 1))}


def isa_for(options: dict) -> str:
    """The best int8 path the compile's machine (`triple`/`cpu`/`features` options, else the host) has."""
    spec = MachineSpec(options.get("triple", ""), options.get("cpu", ""), options.get("features", "")).resolved()
    features = set(spec.features.split(","))
    if not spec.triple.startswith(("x86_64", "i686", "i386")):
        return "portable"
    if {"+avx512vnni", "+avx512f"} <= features:
        return "avx512vnni"
    if "+avxvnni" in features or {"+avx512vnni", "+avx512vl"} <= features:
        return "avxvnni"
    return "avx2" if "+avx2" in features else "portable"


def _call(b: ir.IRBuilder, symbol: str, result: ir.Type, *args: ir.Value) -> ir.Value:
    function = b.module.declare_intrinsic(symbol, (), ir.FunctionType(result, [arg.type for arg in args]))
    return b.call(function, list(args))


def _extend(b: ir.IRBuilder, value: ir.Value, to: ir.Type, unsigned: bool) -> ir.Value:
    return b.zext(value, to) if unsigned else b.sext(value, to)


def _shuffle(b: ir.IRBuilder, a: ir.Value, c: ir.Value, indices: list[int]) -> ir.Value:
    return b.shuffle_vector(a, c, ir.Constant(ir.VectorType(I32, len(indices)), indices))


def _load(b: ir.IRBuilder, pointer: ir.Value, byte: ir.Value, value_type: ir.Type) -> ir.Value:
    return b.load(b.gep(pointer, [byte], source_etype=I8, inbounds=True), typ=value_type, align=1)


class Operands:
    """How one instruction set reads and multiplies the operands of a tile."""

    def __init__(self, isa: Int8Isa, vectors_unsigned: bool):
        self.isa, self.vectors_unsigned = isa, vectors_unsigned
        self.sums = ir.VectorType(I32, isa.lanes)

    def zero(self) -> list[ir.Value]:
        return [ir.Constant(self.sums, None)] * self.isa.parts

    def vector(self, b: ir.IRBuilder, pointer: ir.Value, byte: ir.Value):
        name, lanes = self.isa.name, self.isa.lanes
        if name in ("avx512vnni", "avxvnni"):
            return _load(b, pointer, byte, self.sums)
        wide = I16 if name == "avx2" else I32
        value = _extend(b, _load(b, pointer, byte, ir.VectorType(I8, 4 * lanes)), ir.VectorType(wide, 4 * lanes),
                        self.vectors_unsigned)
        if name == "avx2":  # the halves of 4 lanes each, as vpmaddwd takes them
            return [_shuffle(b, value, value, list(range(half * 16, half * 16 + 16))) for half in range(2)]
        return value

    def broadcast(self, b: ir.IRBuilder, pointer: ir.Value, byte: ir.Value):
        name, lanes = self.isa.name, self.isa.lanes
        if name in ("avx512vnni", "avxvnni"):
            return splat(b, _load(b, pointer, byte, I32), lanes)
        wide = I16 if name == "avx2" else I32
        four = _extend(b, _load(b, pointer, byte, ir.VectorType(I8, 4)), ir.VectorType(wide, 4),
                       not self.vectors_unsigned)
        if name == "avx2":
            repeated = splat(b, b.bitcast(four, I64), 4)
            return b.bitcast(repeated, ir.VectorType(I16, 16))
        return _shuffle(b, four, four, [i % 4 for i in range(4 * lanes)])

    def dot(self, b: ir.IRBuilder, parts: list[ir.Value], vector, broadcast) -> list[ir.Value]:
        """parts += the lane-wise dot products of vector and broadcast (4 byte pairs a lane)."""
        name, lanes = self.isa.name, self.isa.lanes
        if name in ("avx512vnni", "avxvnni"):
            unsigned, signed = (vector, broadcast) if self.vectors_unsigned else (broadcast, vector)
            symbol = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"
            return [_call(b, symbol, self.sums, parts[0], unsigned, signed)]
        if name == "avx2":
            return [b.add(part, _call(b, "llvm.x86.avx2.pmadd.wd", self.sums, half, broadcast))
                    for part, half in zip(parts, vector)]
        products = b.mul(vector, broadcast)
        total = parts[0]
        for i in range(4):
            total = b.add(total, _shuffle(b, products, products, list(range(i, 4 * lanes, 4))))
        return [total]

    def finish(self, b: ir.IRBuilder, parts: list[ir.Value]) -> ir.Value:
        """The int32 sum of each lane."""
        if len(parts) == 1:
            return parts[0]
        low, high = parts
        return b.add(_shuffle(b, low, high, list(range(0, 16, 2))), _shuffle(b, low, high, list(range(1, 16, 2))))


def emit_tile(b: ir.IRBuilder, operands: Operands, steps: int, rows: list[ir.Value], row_step: int,
              vector_base: ir.Value, vector_step: int) -> list[list[ir.Value]]:
    """sums[r][j] (int32 vectors) over `steps` steps: step t reads 4 bytes at rows[r] + t * row_step and
    the j-th vector at vector_base + t * vector_step + j * lanes * 4 (byte offsets)."""
    isa, parts = operands.isa, operands.isa.parts

    def step(t: ir.Value, sums: list[ir.Value]) -> list[ir.Value]:
        row_byte, vector_byte = b.mul(t, const_i64(row_step)), b.mul(t, const_i64(vector_step))
        vectors = [operands.vector(b, vector_base, b.add(vector_byte, const_i64(j * isa.lanes * 4)))
                   for j in range(isa.vectors)]
        for r, row in enumerate(rows):
            broadcast = operands.broadcast(b, row, row_byte)
            for j, vector in enumerate(vectors):
                at = (r * isa.vectors + j) * parts
                sums[at:at + parts] = operands.dot(b, sums[at:at + parts], vector, broadcast)
        return sums

    final = carried_loop(b, const_i64(steps), operands.zero() * (len(rows) * isa.vectors), step)
    return [[operands.finish(b, final[(r * isa.vectors + j) * parts:(r * isa.vectors + j + 1) * parts])
             for j in range(isa.vectors)] for r in range(len(rows))]


class Requantize:
    """The epilogue of the node's attributes on sums: 8-bit, float32 or int32 values to store. `lanes` = None works
    on scalars (a loop LLVM vectorizes), else on vectors of that many lanes."""

    def __init__(self, attrs: dict, lanes: int | None):
        self.attrs, self.lanes = attrs, lanes
        self.dtype = attrs["output_dtype"]
        self.suffix = f"v{lanes}f32" if lanes else "f32"

    def _type(self, element: ir.Type) -> ir.Type:
        return ir.VectorType(element, self.lanes) if self.lanes else element

    def _constant(self, value, element: ir.Type) -> ir.Value:
        return ir.Constant(self._type(element), value)

    def _float(self, b: ir.IRBuilder, name: str, *args: ir.Value) -> ir.Value:
        return _call(b, f"llvm.{name}.{self.suffix}", self._type(F32), *args)

    def __call__(self, b: ir.IRBuilder, sums: ir.Value, offset: ir.Value, multiplier: ir.Value) -> ir.Value:
        if self.dtype == "int32":
            return b.add(sums, offset)
        scaled = b.fmul(b.sitofp(b.add(sums, offset), self._type(F32)), multiplier)
        if self.dtype == "float32":
            if "low" in self.attrs:
                scaled = self._float(b, "maxnum", scaled, self._constant(self.attrs["low"], F32))
            if "high" in self.attrs:
                scaled = self._float(b, "minnum", scaled, self._constant(self.attrs["high"], F32))
            return scaled
        rounded = self._float(b, "roundeven", scaled)
        zero_point = self.attrs["y_zero_point"]  # the clamp (in float: exact for these integers) keeps fptosi defined
        low = self._float(b, "maxnum", rounded, self._constant(float(self.attrs["low"] - zero_point), F32))
        clamped = self._float(b, "minnum", low, self._constant(float(self.attrs["high"] - zero_point), F32))
        ints = b.add(b.fptosi(clamped, self._type(I32)), self._constant(zero_point, I32))
        return b.trunc(ints, self._type(I8))


def store_lanes(b: ir.IRBuilder, value: ir.Value, base: ir.Value, index: ir.Value, count: ir.Value | None) -> None:
    """Store the first `count` lanes of `value` at element `index` of `base` (all lanes when None)."""
    element, lanes = value.type.element, value.type.count
    pointer = b.gep(base, [index], source_etype=element, inbounds=True)
    if count is None:
        b.store(value, pointer, align=1)
        return
    lane_ids = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
    mask = b.icmp_signed("<", lane_ids, splat(b, count, lanes))
    name = f"v{lanes}{'f32' if element == F32 else f'i{element.width}'}"
    function = b.module.declare_intrinsic(f"llvm.masked.store.{name}.p0", (), ir.FunctionType(
        ir.VoidType(), [value.type, PTR, I32, mask.type]))
    b.call(function, [value, pointer, ir.Constant(I32, 1), mask])


def panel_problem(node, size: int, what: str) -> str | None:
    """Why a kernel whose stack panel holds `size` bytes is not compiled (None when it fits)."""
    if size <= PANEL_BYTES:
        return None
    return (f"{node.qualified_op}: a packed {what} of {size} bytes exceeds the {PANEL_BYTES}-byte stack panel; "
            "it stays a float QDQ graph")


def dynamic_rows(b: ir.IRBuilder, first: ir.Value, rows: int, last: int,
                 pointer: Callable[[ir.Value], ir.Value]) -> list[ir.Value]:
    """Pointers to `rows` rows from `first`; rows past `last` re-read row `last` (in bounds, sums dropped)."""
    result = []
    for r in range(rows):
        row = b.add(first, const_i64(r))
        clamped = b.select(b.icmp_signed("<", row, const_i64(last)), row, const_i64(last))
        result.append(pointer(clamped))
    return result
