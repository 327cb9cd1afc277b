"""The GNA program as plain Python: buffers, endpoints, PWL tables and one dataclass per op.

The compiler's GNA target builds a `Program` of these and `encoder.encode` turns it into a stream
(docs/gna-isa.md). Weights, biases and multipliers are numpy arrays (placed in CONST by the
encoder); activations are `Buffer`s (placed in STATE or WORK) or `Ref`s into them. Counts that
follow from the arrays' shapes (inputs, outputs, filters, kernel, channels) are taken from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from runtime.gna.format import SEGMENT_DTYPE, Op, Section


@dataclass(frozen=True, eq=False)
class Buffer:
    """`nbytes` of STATE or WORK memory; the encoder gives it a 64-byte-aligned address.
    Distinct Buffer objects never overlap; parts of one buffer are addressed with `at()`."""

    name: str
    nbytes: int
    section: Section = Section.WORK

    def at(self, offset: int) -> "Ref":
        return Ref(self, offset)


@dataclass(frozen=True)
class Ref:
    """Byte `offset` (a multiple of 64) into `buffer`."""

    buffer: Buffer
    offset: int = 0


Place = Union[Buffer, Ref]


def as_ref(place: Place) -> Ref:
    return place if isinstance(place, Ref) else Ref(place)


@dataclass(frozen=True)
class Pwl:
    """A PWL table: per segment xBase (int32), yBase (int16), slope (int16), shift (0..47)."""

    x_base: tuple
    y_base: tuple
    slope: tuple
    shift: tuple

    def segments(self) -> np.ndarray:
        table = np.zeros(len(self.x_base), SEGMENT_DTYPE)
        for field in ("x_base", "y_base", "slope", "shift"):
            values = np.asarray(getattr(self, field), dtype=np.int64)
            if values.shape != (len(table),):
                raise ValueError(f"PWL {field} has {values.size} values for {len(table)} segments")
            info = np.iinfo(table.dtype[field])
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise ValueError(f"PWL {field} values {values.tolist()} do not fit {table.dtype[field]}")
            table[field] = values
        return table


@dataclass(frozen=True)
class Endpoint:
    """A model input (int16) or output (int16, or int32 from a layer without PWL). Real = integer / scale.
    The buffer holds rows of `row_stride` (default: the last dim) elements; the rest is padding."""

    name: str
    place: Place
    shape: tuple
    scale: float
    dtype: str = "int16"
    layout: str = ""
    row_stride: int | None = None


@dataclass(frozen=True)
class _Layer:
    name: str
    input: Place
    output: Place

    def params(self) -> dict:
        raise NotImplementedError

    def operands(self) -> dict:
        """Role -> Place (STATE/WORK) or numpy array (CONST)."""
        return {"input": self.input, "output": self.output}


@dataclass(frozen=True)
class _Weighted(_Layer):
    weights: np.ndarray
    bias: np.ndarray
    multipliers: np.ndarray | None = None  # uint8 per output row; exactly when weights are int8
    pwl: Pwl | None = None
    out_scale: float = 0.0

    def operands(self) -> dict:
        operands = {**super().operands(), "weights": self.weights, "bias": self.bias}
        if self.multipliers is not None:
            operands["multipliers"] = self.multipliers
        return operands


@dataclass(frozen=True)
class Affine(_Weighted):
    """weights [outputs, inputs]; input [batch, inputs]; output [batch, outputs]."""

    batch: int = 1
    OP = Op.AFFINE

    def params(self):
        outputs, inputs = self.weights.shape
        return {"batch": self.batch, "inputs": inputs, "outputs": outputs}


@dataclass(frozen=True)
class AffineMultiBias(Affine):
    """Affine whose bias is column `bias_index` of an int32 [outputs, bias_stride] matrix: an array, or a
    Place computed at run time (bias_stride then defaults to 1: an int32 vector, e.g. another layer's output)."""

    bias_index: int = 0
    bias_stride: int | None = None
    OP = Op.AFFINE_MULTIBIAS

    def params(self):
        stride = self.bias_stride
        if stride is None:
            stride = self.bias.shape[1] if isinstance(self.bias, np.ndarray) else 1
        return {**super().params(), "bias_stride": stride, "bias_index": self.bias_index}


@dataclass(frozen=True)
class Diagonal(_Weighted):
    """weights [elements]; input and output [batch, elements]."""

    batch: int = 1
    OP = Op.DIAGONAL

    def params(self):
        return {"batch": self.batch, "elements": len(self.weights)}


@dataclass(frozen=True)
class Recurrent(_Weighted):
    """weights [outputs, inputs + outputs]; input [frames, inputs]; output [frames, outputs]; state [outputs]."""

    state: Place | None = None
    frames: int = 1
    OP = Op.RECURRENT

    def params(self):
        outputs, width = self.weights.shape
        return {"frames": self.frames, "inputs": width - outputs, "outputs": outputs}

    def operands(self):
        return {**super().operands(), "state": self.state}


@dataclass(frozen=True)
class Conv1D(_Weighted):
    """weights [filters, kernel, channels]; input [length, channels]; output [out_length, filters]."""

    length: int = 0
    stride: int = 1
    dilation: int = 1
    pad: tuple = (0, 0)
    OP = Op.CONV1D

    def params(self):
        filters, kernel, channels = self.weights.shape
        return {"length": self.length, "channels": channels, "filters": filters, "kernel": kernel,
                "stride": self.stride, "dilation": self.dilation, "pad_begin": self.pad[0], "pad_end": self.pad[1]}


@dataclass(frozen=True)
class Conv2D(_Weighted):
    """weights [filters, kernel_h, kernel_w, channels]; input [height, width, channels]; output [oh, ow, filters].
    `pads` is (top, left, bottom, right)."""

    height: int = 0
    width: int = 0
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    OP = Op.CONV2D

    def params(self):
        filters, kernel_h, kernel_w, channels = self.weights.shape
        return {"height": self.height, "width": self.width, "channels": channels, "filters": filters,
                "kernel_h": kernel_h, "kernel_w": kernel_w, "stride_h": self.stride[0], "stride_w": self.stride[1],
                "dilation_h": self.dilation[0], "dilation_w": self.dilation[1], "pad_top": self.pads[0],
                "pad_left": self.pads[1], "pad_bottom": self.pads[2], "pad_right": self.pads[3]}


@dataclass(frozen=True)
class MaxPool(_Layer):
    """input [height, width, channels] (height 1 for 1-D); `window` and `stride` are (h, w)."""

    height: int = 1
    width: int = 0
    channels: int = 0
    window: tuple = (1, 1)
    stride: tuple = (1, 1)
    OP = Op.MAXPOOL

    def params(self):
        return {"height": self.height, "width": self.width, "channels": self.channels, "window_h": self.window[0],
                "window_w": self.window[1], "stride_h": self.stride[0], "stride_w": self.stride[1]}


@dataclass(frozen=True)
class Activation(_Layer):
    """The standalone PWL op: int32 [elements] -> int16 [elements]."""

    elements: int = 0
    pwl: Pwl | None = None
    out_scale: float = 0.0
    OP = Op.PWL

    def params(self):
        return {"elements": self.elements}


@dataclass(frozen=True)
class Copy(_Layer):
    """rows x columns int16, rows `in_stride` / `out_stride` elements apart (default: columns)."""

    rows: int = 1
    columns: int = 0
    in_stride: int | None = None
    out_stride: int | None = None
    OP = Op.COPY

    def params(self):
        return {"rows": self.rows, "columns": self.columns, "in_stride": self.in_stride or self.columns,
                "out_stride": self.out_stride or self.columns}


@dataclass(frozen=True)
class Transpose(_Layer):
    """int16 [rows, columns] -> [columns, rows] (interleave / deinterleave)."""

    rows: int = 1
    columns: int = 0
    OP = Op.TRANSPOSE

    def params(self):
        return {"rows": self.rows, "columns": self.columns}


@dataclass(frozen=True)
class Program:
    """Everything a stream holds. `generation` is "GNA2.0" or "GNA3.0"."""

    inputs: tuple
    outputs: tuple
    layers: tuple
    generation: str = "GNA2.0"
