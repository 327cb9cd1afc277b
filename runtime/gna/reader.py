"""Reads a GNA stream (docs/gna-isa.md, section 7) and checks every field before anything runs it.

Errors name the header field, the endpoint, or the layer (index, name, op) and what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isfinite, prod

import numpy as np

from runtime.gna.format import (ALIGNMENT, GENERATIONS, MAGIC, MAX_LAYERS, MAX_RANK, MAX_SEGMENTS, MAX_SHIFT,
                                SEGMENT_DTYPE, VERSION, DType, EndpointRecord, GnaFormatError, Header, LayerRecord,
                                Op, Section, align, unpack)
from runtime.gna.isa import ACTIVATIONS, Operand, layer_operands, need


@dataclass(frozen=True)
class Endpoint:
    """A model input or output: `shape` in a buffer of prod(shape[:-1]) rows of `row_stride` elements."""

    name: str
    dtype: str
    shape: tuple
    layout: str
    row_stride: int
    address: int
    scale: float

    @property
    def buffer_shape(self) -> tuple:
        return (prod(self.shape[:-1]), self.row_stride)

    def operand(self, sections: tuple) -> Operand:
        return Operand(self.name, self.address, self.dtype, self.buffer_shape, sections)


@dataclass(frozen=True)
class Layer:
    """A checked layer: its op, parameters by name, operands by role and PWL segments (if any)."""

    index: int
    name: str
    op: Op
    flags: int
    params: dict
    operands: dict
    pwl: np.ndarray | None
    out_scale: float

    def describe(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"layer {self.index}{name} ({self.op.name})"


@dataclass(frozen=True)
class Stream:
    """A decoded, checked stream. `const` is the CONST section's bytes."""

    generation: str
    inputs: list
    outputs: list
    layers: list
    const: bytes
    state_bytes: int
    work_bytes: int

    @property
    def sections(self) -> dict:
        """Section -> (first address, size in bytes)."""
        const = len(self.const)
        return {Section.CONST: (0, const), Section.STATE: (const, self.state_bytes),
                Section.WORK: (const + self.state_bytes, self.work_bytes)}

    @property
    def memory_bytes(self) -> int:
        return len(self.const) + self.state_bytes + self.work_bytes


def _text(data, strings_at: int, strings_bytes: int, offset: int, size: int, what: str) -> str:
    need(offset + size <= strings_bytes, f"{what}: name bytes [{offset}, {offset + size}) lie outside the string "
         f"table of {strings_bytes} bytes")
    try:
        return bytes(data[strings_at + offset: strings_at + offset + size]).decode("utf-8")
    except UnicodeDecodeError:
        raise GnaFormatError(f"{what}: the name is not valid UTF-8") from None


def _read_header(data) -> Header:
    need(len(data) >= Header.STRUCT.size, f"the stream has {len(data)} bytes, fewer than its {Header.STRUCT.size}-byte "
         "header; it is truncated or not a GNA stream")
    header = unpack(Header, data, 0)
    need(header.magic == MAGIC, f"bad magic {header.magic!r} (expected {MAGIC!r}): this is not a Kiln GNA stream")
    need(header.version == VERSION, f"stream format version {header.version}; this runtime reads version {VERSION}. "
         "Recompile the model with this Kiln version.")
    need(header.header_bytes == Header.STRUCT.size, f"header_bytes is {header.header_bytes}, expected "
         f"{Header.STRUCT.size}")
    need(not any(bytes(data[52:64])), "the header's reserved bytes 52..63 are not zero")
    need(header.file_bytes == len(data), f"the header says the stream has {header.file_bytes} bytes but it has "
         f"{len(data)}; it is truncated or damaged")
    need(header.input_count >= 1 and header.output_count >= 1, f"the stream has {header.input_count} inputs and "
         f"{header.output_count} outputs; it needs at least one of each")
    need(1 <= header.layer_count <= MAX_LAYERS, f"layer_count is {header.layer_count}; it must be 1 to {MAX_LAYERS}")
    for field in ("const_bytes", "state_bytes", "work_bytes"):
        need(getattr(header, field) % ALIGNMENT == 0, f"{field} is {getattr(header, field)}, not a multiple of "
             f"{ALIGNMENT}")
    return header


def _generation(header: Header) -> str:
    name = header.generation.rstrip(b"\0")
    need(name.decode("ascii", "replace") in GENERATIONS and header.generation == name.ljust(8, b"\0"),
         f"unknown target generation {header.generation!r}; this runtime runs {', '.join(GENERATIONS)}")
    return name.decode("ascii")


def _table_offsets(header: Header) -> dict:
    """Byte offset of each table; checks that the tables and the CONST section fill the file exactly."""
    offsets, at = {}, Header.STRUCT.size
    for table, size in (("endpoints", (header.input_count + header.output_count) * EndpointRecord.STRUCT.size),
                        ("layers", header.layer_count * LayerRecord.STRUCT.size),
                        ("segments", header.segment_count * SEGMENT_DTYPE.itemsize),
                        ("strings", header.strings_bytes)):
        offsets[table], at = at, at + size
    offsets["const"] = align(at)
    end = offsets["const"] + header.const_bytes
    need(end == header.file_bytes, f"the tables and the CONST section end at byte {end} but the stream has "
         f"{header.file_bytes} bytes; it is truncated or damaged")
    return offsets


def _check_operand(operand: Operand, stream: Stream, what: str) -> None:
    need(operand.address % ALIGNMENT == 0, f"{what}: the {operand.role} address {operand.address} is not "
         f"{ALIGNMENT}-byte aligned")
    for section, (start, size) in stream.sections.items():
        if start <= operand.address < start + size:
            need(operand.address + operand.nbytes <= start + size, f"{what}: the {operand.role} ({operand.dtype} "
                 f"{list(operand.shape)}, {operand.nbytes} bytes at {operand.address}) runs past the end of the "
                 f"{section.name} section [{start}, {start + size})")
            need(section in operand.sections, f"{what}: the {operand.role} lies in the {section.name} section; it "
                 f"must lie in {' or '.join(s.name for s in operand.sections)}")
            return
    raise GnaFormatError(f"{what}: the {operand.role} address {operand.address} is outside memory "
                         f"(0 to {stream.memory_bytes} bytes)")


def _endpoint(record: EndpointRecord, name: str, is_input: bool) -> Endpoint:
    what = f"{'input' if is_input else 'output'} endpoint {name!r}"
    need(record.dtype in tuple(DType) and (record.dtype == DType.INT16 or not is_input),
         f"{what}: dtype code {record.dtype}; inputs are int16 (1), outputs int16 (1) or int32 (2)")
    need(1 <= record.rank <= MAX_RANK, f"{what}: rank {record.rank}; it must be 1 to {MAX_RANK}")
    shape = record.dims[:record.rank]
    need(all(d >= 1 for d in shape) and not any(record.dims[record.rank:]), f"{what}: dims {list(record.dims)} for "
         f"rank {record.rank}: used dims must be at least 1, unused ones 0")
    need(record.row_stride >= shape[-1], f"{what}: row_stride {record.row_stride} is below the last dim {shape[-1]}")
    layout = record.layout.rstrip(b"\0")
    letters = layout.isalpha() and len(layout) == record.rank or not layout
    need(record.layout == layout.ljust(8, b"\0") and letters,
         f"{what}: layout {layout.decode('ascii', 'replace')!r} must be empty or one ASCII letter per dim "
         f"(rank {record.rank})")
    need(isfinite(record.scale) and record.scale > 0, f"{what}: scale factor {record.scale} must be finite and above 0")
    need(record.reserved == 0, f"{what}: reserved bytes are not zero")
    return Endpoint(name, DType(record.dtype).name.lower(), shape, layout.decode("ascii"), record.row_stride,
                    record.address, record.scale)


def _layer(index: int, record: LayerRecord, name: str, segments: np.ndarray, generation: str, stream: Stream) -> Layer:
    try:
        op = Op(record.op)
    except ValueError:
        raise GnaFormatError(f"layer {index} {name!r}: unknown opcode {record.op}; known: "
                             f"{', '.join(f'{o.value} {o.name}' for o in Op)}") from None
    what = f"layer {index} {name!r} ({op.name})"
    try:
        need(record.reserved == 0, "reserved bytes are not zero")
        need(isfinite(record.out_scale) and record.out_scale >= 0, f"out_scale {record.out_scale} must be finite "
             "and 0 (not given) or above")
        params, operands = layer_operands(record, generation)
    except GnaFormatError as error:
        raise GnaFormatError(f"{what}: {error}") from None
    for operand in operands.values():
        _check_operand(operand, stream, what)
    table = None
    if record.pwl_count:
        first, count = record.pwl_first, record.pwl_count
        need(count <= MAX_SEGMENTS, f"{what}: the PWL table has {count} segments; at most {MAX_SEGMENTS} are allowed")
        need(first + count <= len(segments), f"{what}: PWL segments [{first}, {first + count}) lie outside the "
             f"segment table of {len(segments)}")
        table = segments[first:first + count]
        need(bool(np.all(np.diff(table["x_base"].astype(np.int64)) > 0)), f"{what}: PWL xBase values "
             f"{table['x_base'].tolist()} must be strictly increasing")
        bad = np.flatnonzero(table["shift"] > MAX_SHIFT)
        need(not bad.size, f"{what}: PWL segment {bad[:1].tolist()} has shift above {MAX_SHIFT}")
    else:
        need(record.pwl_first == 0, f"{what}: pwl_first must be 0 without a PWL table")
    return Layer(index, name, op, record.flags, params, operands, table, record.out_scale)


def read_stream(data) -> Stream:
    """Decode and check a stream (bytes, bytearray, memoryview or mmap); raises GnaFormatError."""
    header = _read_header(data)
    generation = _generation(header)
    offsets = _table_offsets(header)
    strings = (offsets["strings"], header.strings_bytes)
    segments = np.frombuffer(data, SEGMENT_DTYPE, header.segment_count, offsets["segments"]).copy()
    need(not segments.view(np.uint8).reshape(-1, SEGMENT_DTYPE.itemsize)[:, 9:].any(),
         "the reserved bytes of a PWL segment are not zero")
    const = bytes(data[offsets["const"]:offsets["const"] + header.const_bytes])
    stream = Stream(generation, [], [], [], const, header.state_bytes, header.work_bytes)
    names = set()
    for i in range(header.input_count + header.output_count):
        record = unpack(EndpointRecord, data, offsets["endpoints"] + i * EndpointRecord.STRUCT.size)
        is_input = i < header.input_count
        name = _text(data, *strings, record.name_offset, record.name_bytes, f"endpoint {i}")
        need(name and name not in names, f"endpoint {i}: name {name!r} is empty or used twice")
        names.add(name)
        endpoint = _endpoint(record, name, is_input)
        sections = (Section.WORK,) if is_input else ACTIVATIONS
        _check_operand(endpoint.operand(sections), stream, f"{'input' if is_input else 'output'} endpoint {name!r}")
        (stream.inputs if is_input else stream.outputs).append(endpoint)
    for index in range(header.layer_count):
        record = unpack(LayerRecord, data, offsets["layers"] + index * LayerRecord.STRUCT.size)
        name = _text(data, *strings, record.name_offset, record.name_bytes, f"layer {index}")
        stream.layers.append(_layer(index, record, name, segments, generation, stream))
    return stream
