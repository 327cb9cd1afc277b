"""Encodes a GNA `Program` (layers.py) into a stream (docs/gna-isa.md, section 7).

Arrays go to CONST (identical ones once), buffers to STATE or WORK, every address 64-byte
aligned. The finished bytes are read back with the runtime's reader, so every rule of the ISA
is checked in one place; errors name the layer and say what to change.
"""

from __future__ import annotations

import numpy as np

from compiler.artifact import Artifact, compiler_version
from compiler.codegen.gna.layers import Buffer, Program, Ref, as_ref
from runtime.gna.format import (MAGIC, OPERAND_FIELDS, PARAM_COUNT, STREAM_FILE, VERSION, DType, EndpointRecord,
                                GnaFormatError, Header, LayerRecord, Section, align, pack)
from runtime.gna.isa import layer_operands
from runtime.gna.reader import read_stream

# Role -> the dtypes its array may have.
_ARRAY_DTYPES = {"weights": ("int16", "int8"), "bias": ("int32",), "multipliers": ("uint8",)}


class GnaEncodeError(ValueError):
    """The program cannot be encoded: it breaks a rule of docs/gna-isa.md. `layer`: the index of the layer at
    fault, when one is."""

    def __init__(self, message: str, layer: int | None = None):
        super().__init__(message)
        self.layer = layer


class _Layout:
    """Addresses of constants, buffers and names, and the PWL segment table, in first-use order."""

    def __init__(self):
        self.const = bytearray()
        self._const_at: dict = {}
        self.buffers: dict[Buffer, int] = {}
        self.strings = bytearray()
        self.tables: list[np.ndarray] = []
        self._table_at: dict = {}
        self.segment_count = 0

    def constant(self, array: np.ndarray) -> int:
        data = np.ascontiguousarray(array).tobytes()
        if data not in self._const_at:
            self._const_at[data] = len(self.const)
            self.const += data + bytes(align(len(data)) - len(data))
        return self._const_at[data]

    def name(self, text: str) -> tuple[int, int]:
        data = text.encode("utf-8")
        self.strings += data
        return len(self.strings) - len(data), len(data)

    def pwl(self, table: np.ndarray) -> tuple[int, int]:
        key = table.tobytes()
        if key not in self._table_at:
            self._table_at[key] = self.segment_count
            self.tables.append(table)
            self.segment_count += len(table)
        return self._table_at[key], len(table)

    def place_buffers(self, buffers: list[Buffer]) -> dict[Section, int]:
        """Give each buffer an address: STATE ones after CONST, then WORK ones. Returns section sizes."""
        sizes, at = {}, align(len(self.const))
        for section in (Section.STATE, Section.WORK):
            start = at
            for buffer in buffers:
                if buffer.section == section and buffer not in self.buffers:
                    self.buffers[buffer] = at
                    at += align(buffer.nbytes)
            sizes[section] = at - start
        return sizes

    def address(self, ref: Ref) -> int:
        return self.buffers[ref.buffer] + ref.offset


def _check_array(what: str, role: str, array) -> None:
    if not isinstance(array, np.ndarray) or str(array.dtype) not in _ARRAY_DTYPES[role]:
        got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise GnaEncodeError(f"{what}: {role} must be a numpy array of {' or '.join(_ARRAY_DTYPES[role])}, got {got}")


def _check_place(what: str, role: str, place) -> Ref:
    if not isinstance(place, (Buffer, Ref)):
        raise GnaEncodeError(f"{what}: {role} must be a Buffer or a Ref into one, got {type(place).__name__}")
    ref = as_ref(place)
    if ref.buffer.section == Section.CONST or not 0 <= ref.offset < ref.buffer.nbytes:
        raise GnaEncodeError(f"{what}: {role} at offset {ref.offset} of buffer {ref.buffer.name!r} "
                             f"({ref.buffer.nbytes} bytes, {ref.buffer.section.name}): buffers live in STATE or "
                             "WORK and a Ref must point inside its buffer")
    return ref


def _describe(index: int, layer) -> str:
    return f"layer {index} {layer.name!r} ({layer.OP.name})"


def _layer_record(index: int, layer, layout: _Layout, places: dict) -> LayerRecord:
    """The layer's record; `places` collects where each operand came from: a Ref or an array."""
    what = _describe(index, layer)
    addresses = {}
    for role, value in layer.operands().items():
        if isinstance(value, np.ndarray):
            places[(index, role)] = value
            addresses[role] = layout.constant(value)
        else:
            ref = _check_place(what, role, value)
            places[(index, role)] = ref
            addresses[role] = layout.address(ref)
    weights = getattr(layer, "weights", None)
    int8 = weights is not None and weights.dtype == np.int8
    if weights is not None and int8 != ("multipliers" in addresses):
        raise GnaEncodeError(f"{what}: int8 weights need uint8 multipliers (one per output row) and int16 weights "
                             "take none")
    pwl = getattr(layer, "pwl", None)
    try:
        pwl_first, pwl_count = layout.pwl(pwl.segments()) if pwl is not None else (0, 0)
    except ValueError as error:
        raise GnaEncodeError(f"{what}: {error}") from None
    params = list(layer.params().values())
    if any(not isinstance(p, (int, np.integer)) or p < 0 for p in params):
        raise GnaEncodeError(f"{what}: parameters {layer.params()} must be non-negative integers")
    return LayerRecord(int(layer.OP), int(int8), 0, *layout.name(layer.name), pwl_first, pwl_count,
                       *(addresses.get(field, 0) for field in OPERAND_FIELDS), float(getattr(layer, "out_scale", 0.0)),
                       tuple(params) + (0,) * (PARAM_COUNT - len(params)))


def _endpoint_record(endpoint, layout: _Layout) -> EndpointRecord:
    shape = tuple(int(d) for d in endpoint.shape)
    return EndpointRecord(*layout.name(endpoint.name), int(DType[endpoint.dtype.upper()]), len(shape), 0,
                          endpoint.layout.encode("ascii"), shape + (0,) * (4 - len(shape)),
                          endpoint.row_stride or shape[-1], layout.address(as_ref(endpoint.place)), endpoint.scale)


def _buffers_in_order(program: Program) -> list[Buffer]:
    seen: dict[Buffer, None] = {}
    for endpoint in (*program.inputs, *program.outputs):
        seen.setdefault(as_ref(endpoint.place).buffer)
    for index, layer in enumerate(program.layers):
        for role, value in layer.operands().items():
            if not isinstance(value, np.ndarray):
                seen.setdefault(_check_place(_describe(index, layer), role, value).buffer)
    return list(seen)


def _check_places(stream, places: dict) -> None:
    """Arrays have the shapes the layer's parameters give its operands, and operands stay inside the
    buffers they point into (the reader sees only addresses and sections)."""
    for (index, role), place in places.items():
        layer = stream.layers[index]
        operand = layer.operands[role]
        if isinstance(place, np.ndarray):
            if place.shape != operand.shape:
                raise GnaEncodeError(f"{layer.describe()}: {role} has shape {list(place.shape)}; with parameters "
                                     f"{layer.params} it must be {list(operand.shape)}")
            continue
        ref = place
        if ref.offset + operand.nbytes > ref.buffer.nbytes:
            raise GnaEncodeError(f"{layer.describe()}: the {role} ({operand.dtype} {list(operand.shape)}, "
                                 f"{operand.nbytes} bytes at offset {ref.offset}) does not fit buffer "
                                 f"{ref.buffer.name!r} of {ref.buffer.nbytes} bytes")


def encode(program: Program) -> bytes:
    """The stream's bytes; raises GnaEncodeError naming the layer or endpoint at fault."""
    layout, places = _Layout(), {}
    for endpoint in (*program.inputs, *program.outputs):
        _check_place(f"endpoint {endpoint.name!r}", "place", endpoint.place)
        if (endpoint.dtype.upper() not in DType.__members__ or not 1 <= len(endpoint.shape) <= 4
                or not endpoint.layout.isascii()):
            raise GnaEncodeError(f"endpoint {endpoint.name!r}: dtype {endpoint.dtype!r}, shape {endpoint.shape}, "
                                 f"layout {endpoint.layout!r}; use int16 (inputs) or int16/int32 (outputs), rank 1 to "
                                 "4 and an ASCII layout")
    buffers = _buffers_in_order(program)
    # Constants first (their total size sets where STATE starts), then buffers, then the records.
    for index, layer in enumerate(program.layers):
        for role, value in layer.operands().items():
            if isinstance(value, np.ndarray):
                _check_array(_describe(index, layer), role, value)
                layout.constant(value)
    sizes = layout.place_buffers(buffers)
    layers = [_layer_record(i, layer, layout, places) for i, layer in enumerate(program.layers)]
    for index, record in enumerate(layers):
        try:
            layer_operands(record, program.generation)
        except GnaFormatError as error:
            raise GnaEncodeError(f"{_describe(index, program.layers[index])}: {error}", index) from None
    endpoints = [_endpoint_record(e, layout) for e in (*program.inputs, *program.outputs)]
    segments = np.concatenate(layout.tables) if layout.tables else np.zeros(0, np.uint8)
    try:
        tables = b"".join(pack(r) for r in endpoints) + b"".join(pack(r) for r in layers) + segments.tobytes()
        body = tables + bytes(layout.strings)
        padding = align(Header.STRUCT.size + len(body)) - Header.STRUCT.size - len(body)
        const = bytes(layout.const)
        header = Header(MAGIC, VERSION, Header.STRUCT.size, program.generation.encode("ascii"), len(program.inputs),
                        len(program.outputs), len(layers), layout.segment_count, len(layout.strings), len(const),
                        sizes[Section.STATE], sizes[Section.WORK],
                        Header.STRUCT.size + len(body) + padding + len(const))
        data = pack(header) + body + bytes(padding) + const
        stream = read_stream(data)
    except GnaFormatError as error:
        raise GnaEncodeError(f"the program breaks the GNA ISA: {error}") from None
    _check_places(stream, places)
    return data


def gna_artifact(stream: bytes, options: dict | None = None) -> Artifact:
    """An artifact that `runtime.load` runs: float32 endpoints (quantized by the runtime), stream in model.gna."""
    decoded = read_stream(stream)
    entries = {kind: [{"name": e.name, "type": {"tensor": "float32", "shape": list(e.shape)}} for e in endpoints]
               for kind, endpoints in (("inputs", decoded.inputs), ("outputs", decoded.outputs))}
    options = dict(sorted((options or {}).items()))
    manifest = {"target": "gna", "compiler_version": compiler_version(), "options": options,
                **entries, "gna": {"stream": STREAM_FILE, "generation": decoded.generation,
                                   "layers": len(decoded.layers), "memory_bytes": decoded.memory_bytes,
                                   "scales": {e.name: e.scale for e in (*decoded.inputs, *decoded.outputs)}}}
    return Artifact(manifest, {STREAM_FILE: stream})
