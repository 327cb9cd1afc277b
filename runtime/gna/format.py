"""The GNA stream's binary layout (docs/gna-isa.md, section 7): constants and fixed-size records.

The one definition of the format: the reader decodes with it and the compiler's encoder packs
with it, so the two sides cannot drift apart.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass
from enum import IntEnum

import numpy as np

from runtime.artifact_reader import ArtifactError

MAGIC = b"KILNGNA\0"
VERSION = 1
ALIGNMENT = 64
GENERATIONS = ("GNA2.0", "GNA3.0")
MAX_LAYERS = 4096
MAX_SEGMENTS = 128
MAX_BATCH = 8
MAX_REDUCTION = 65528
MAX_FILTERS = 65532
MAX_SHIFT = 47
MAX_RANK = 4
PARAM_COUNT = 16
STREAM_FILE = "model.gna"


def align(size: int) -> int:
    """`size` rounded up to the buffer alignment."""
    return -(-size // ALIGNMENT) * ALIGNMENT


class GnaFormatError(ArtifactError):
    """A GNA stream is damaged or breaks a rule of docs/gna-isa.md."""


class Op(IntEnum):
    AFFINE = 1
    AFFINE_MULTIBIAS = 2
    DIAGONAL = 3
    RECURRENT = 4
    CONV1D = 5
    CONV2D = 6
    MAXPOOL = 7
    PWL = 8
    COPY = 9
    TRANSPOSE = 10


class Section(IntEnum):
    CONST = 0
    STATE = 1
    WORK = 2


class DType(IntEnum):
    INT16 = 1
    INT32 = 2


FLAG_INT8_WEIGHTS = 1
# Operand fields of a layer descriptor, in record order.
OPERAND_FIELDS = ("input", "output", "weights", "bias", "multipliers", "state")


@dataclass(frozen=True)
class Header:
    magic: bytes
    version: int
    header_bytes: int
    generation: bytes
    input_count: int
    output_count: int
    layer_count: int
    segment_count: int
    strings_bytes: int
    const_bytes: int
    state_bytes: int
    work_bytes: int
    file_bytes: int

    STRUCT = struct.Struct("<8sHH8sHHIIIIIII12x")


@dataclass(frozen=True)
class EndpointRecord:
    name_offset: int
    name_bytes: int
    dtype: int
    rank: int
    reserved: int
    layout: bytes
    dims: tuple
    row_stride: int
    address: int
    scale: float

    STRUCT = struct.Struct("<IIBBH8s4IIIf")


@dataclass(frozen=True)
class LayerRecord:
    op: int
    flags: int
    reserved: int
    name_offset: int
    name_bytes: int
    pwl_first: int
    pwl_count: int
    input: int
    output: int
    weights: int
    bias: int
    multipliers: int
    state: int
    out_scale: float
    params: tuple

    STRUCT = struct.Struct(f"<BBHIIIIIIIIIIf{PARAM_COUNT}I")


# One PWL segment (12 bytes); tables are numpy arrays of these both when read and when written.
SEGMENT_DTYPE = np.dtype([("x_base", "<i4"), ("y_base", "<i2"), ("slope", "<i2"), ("shift", "u1"),
                          ("reserved", "V3")])


# Records whose tuple fields (dims, params) are flattened in the struct: (field, length).
_ARRAY_FIELDS = {EndpointRecord: ("dims", MAX_RANK), LayerRecord: ("params", PARAM_COUNT)}


def pack(record) -> bytes:
    """The record's bytes."""
    values = astuple(record)
    if type(record) in _ARRAY_FIELDS:
        name, _ = _ARRAY_FIELDS[type(record)]
        at = list(type(record).__dataclass_fields__).index(name)
        values = values[:at] + tuple(values[at]) + values[at + 1:]
    try:
        return record.STRUCT.pack(*values)
    except struct.error as error:
        raise GnaFormatError(f"cannot pack {record}: {error}") from None


def unpack(cls, data, offset: int):
    """The record of type `cls` at byte `offset` of `data` (the caller checked the range)."""
    values = cls.STRUCT.unpack_from(data, offset)
    if cls in _ARRAY_FIELDS:
        name, length = _ARRAY_FIELDS[cls]
        at = list(cls.__dataclass_fields__).index(name)
        values = values[:at] + (tuple(values[at:at + length]),) + values[at + length:]
    return cls(*values)
