"""The per-op rules of docs/gna-isa.md (section 5): parameter names, limits, and each operand's
dtype, shape and allowed sections, derived from a layer record.

The reader checks streams with it, the executor sizes its views with it, the disassembler prints
from it; the encoder's output is checked by the reader, so it is the one place the ISA lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from runtime.gna.format import (FLAG_INT8_WEIGHTS, GENERATIONS, MAX_BATCH, MAX_FILTERS, MAX_REDUCTION, OPERAND_FIELDS,
                                GnaFormatError, LayerRecord, Op, Section)

ACTIVATIONS = (Section.STATE, Section.WORK)
CONSTANTS = (Section.CONST,)
ANYWHERE = (Section.CONST, Section.STATE, Section.WORK)

PARAMS = {
    Op.AFFINE: ("batch", "inputs", "outputs"),
    Op.AFFINE_MULTIBIAS: ("batch", "inputs", "outputs", "bias_stride", "bias_index"),
    Op.DIAGONAL: ("batch", "elements"),
    Op.RECURRENT: ("frames", "inputs", "outputs"),
    Op.CONV1D: ("length", "channels", "filters", "kernel", "stride", "dilation", "pad_begin", "pad_end"),
    Op.CONV2D: ("height", "width", "channels", "filters", "kernel_h", "kernel_w", "stride_h", "stride_w",
                "dilation_h", "dilation_w", "pad_top", "pad_left", "pad_bottom", "pad_right"),
    Op.MAXPOOL: ("height", "width", "channels", "window_h", "window_w", "stride_h", "stride_w"),
    Op.PWL: ("elements",),
    Op.COPY: ("rows", "columns", "in_stride", "out_stride"),
    Op.TRANSPOSE: ("rows", "columns"),
}
# Whether a PWL table may, must or must not be attached. With "optional", the output is int16
# when one is attached and int32 (the saturated accumulator) when not.
PWL_RULE = {Op.AFFINE: "optional", Op.AFFINE_MULTIBIAS: "optional", Op.DIAGONAL: "optional",
            Op.RECURRENT: "required", Op.CONV1D: "optional", Op.CONV2D: "optional", Op.MAXPOOL: "none",
            Op.PWL: "required", Op.COPY: "none", Op.TRANSPOSE: "none"}
WEIGHTED_OPS = frozenset(op for op, rule in PWL_RULE.items() if rule == "optional") | {Op.RECURRENT}


@dataclass(frozen=True)
class Operand:
    """A memory operand: `shape` elements of `dtype` at byte `address`; COPY operands are
    (rows, columns) with `row_stride` elements from one row to the next."""

    role: str
    address: int
    dtype: str
    shape: tuple
    sections: tuple
    row_stride: int | None = None

    @property
    def nbytes(self) -> int:
        itemsize = np.dtype(self.dtype).itemsize
        if self.row_stride is not None:
            rows, columns = self.shape
            return ((rows - 1) * self.row_stride + columns) * itemsize
        return prod(self.shape) * itemsize

    def overlaps(self, other: "Operand") -> bool:
        return self.address < other.address + other.nbytes and other.address < self.address + self.nbytes


def need(condition: bool, message: str) -> None:
    if not condition:
        raise GnaFormatError(message)


def _positive(params: dict, *names: str) -> None:
    for name in names:
        need(params[name] >= 1, f"{name} is {params[name]}, it must be at least 1")


def _multiple_of_8(value: int, what: str) -> None:
    need(value >= 8 and value % 8 == 0, f"{what} is {value}; it must be a positive multiple of 8 (pad it with zeros)")


def _reduction(value: int, what: str) -> None:
    _multiple_of_8(value, what)
    need(value <= MAX_REDUCTION, f"{what} is {value}, above the limit of {MAX_REDUCTION}; split the layer")


def _filters(count: int) -> None:
    need(4 <= count <= MAX_FILTERS and count % 4 == 0,
         f"filters is {count}; it must be a multiple of 4 from 4 to {MAX_FILTERS} (pad with zero filters)")


def _needs_gna3(generation: str, what: str) -> None:
    need(GENERATIONS.index(generation) >= GENERATIONS.index("GNA3.0"),
         f"{what} needs generation GNA3.0; this stream is for {generation}")


def conv_output_size(size: int, pad_before: int, pad_after: int, kernel: int, stride: int, dilation: int) -> int:
    """Output length along one axis (may be < 1 for a window larger than the padded input)."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def _accumulator_output(layer: LayerRecord, shape: tuple) -> Operand:
    return Operand("output", layer.output, "int16" if layer.pwl_count else "int32", shape, ACTIVATIONS)


def _weights(layer: LayerRecord, shape: tuple, bias_shape: tuple, bias_sections=CONSTANTS) -> list[Operand]:
    """Weights, bias and (int8 weights) the per-row multipliers; a row is shape[0]."""
    int8 = bool(layer.flags & FLAG_INT8_WEIGHTS)
    operands = [Operand("weights", layer.weights, "int8" if int8 else "int16", shape, CONSTANTS),
                Operand("bias", layer.bias, "int32", bias_shape, bias_sections)]
    if int8:
        operands.append(Operand("multipliers", layer.multipliers, "uint8", (shape[0],), CONSTANTS))
    return operands


def _affine(layer, p, generation):
    need(1 <= p["batch"] <= MAX_BATCH, f"batch is {p['batch']}; it must be 1 to {MAX_BATCH}")
    _reduction(p["inputs"], "inputs")
    _positive(p, "outputs")
    n = p["outputs"]
    if layer.op == Op.AFFINE_MULTIBIAS:
        _positive(p, "bias_stride")
        need(p["bias_index"] < p["bias_stride"], f"bias_index {p['bias_index']} is not below bias_stride "
             f"{p['bias_stride']}")
        weights = _weights(layer, (n, p["inputs"]), (n, p["bias_stride"]), ANYWHERE)
    else:
        weights = _weights(layer, (n, p["inputs"]), (n,))
    return [Operand("input", layer.input, "int16", (p["batch"], p["inputs"]), ACTIVATIONS),
            _accumulator_output(layer, (p["batch"], n)), *weights]


def _diagonal(layer, p, generation):
    need(1 <= p["batch"] <= MAX_BATCH, f"batch is {p['batch']}; it must be 1 to {MAX_BATCH}")
    _multiple_of_8(p["elements"], "elements")
    shape = (p["batch"], p["elements"])
    return [Operand("input", layer.input, "int16", shape, ACTIVATIONS), _accumulator_output(layer, shape),
            *_weights(layer, (p["elements"],), (p["elements"],))]


def _recurrent(layer, p, generation):
    _positive(p, "frames", "outputs")
    _multiple_of_8(p["inputs"], "inputs")
    t, k, n = p["frames"], p["inputs"], p["outputs"]
    _reduction(k + n, "inputs + outputs")
    operands = [Operand("input", layer.input, "int16", (t, k), ACTIVATIONS),
                Operand("output", layer.output, "int16", (t, n), ACTIVATIONS),
                *_weights(layer, (n, k + n), (n,)), Operand("state", layer.state, "int16", (n,), ACTIVATIONS)]
    for other in (operands[0], operands[-1]):
        need(not operands[1].overlaps(other), f"the output overlaps the {other.role}; RECURRENT reads its "
             "input and state while it writes frames, give the output its own buffer")
    return operands


def _conv(layer, p, generation):
    if layer.op == Op.CONV1D:
        axes = [("length", "kernel", "stride", "dilation", "pad_begin", "pad_end")]
        input_shape, kernel_shape = (p["length"], p["channels"]), (p["kernel"],)
    else:
        _needs_gna3(generation, "CONV2D")
        axes = [("height", "kernel_h", "stride_h", "dilation_h", "pad_top", "pad_bottom"),
                ("width", "kernel_w", "stride_w", "dilation_w", "pad_left", "pad_right")]
        input_shape, kernel_shape = (p["height"], p["width"], p["channels"]), (p["kernel_h"], p["kernel_w"])
    _positive(p, "channels", *(name for axis in axes for name in axis[:4]))
    _multiple_of_8(prod(input_shape), "the input element count")
    _filters(p["filters"])
    _reduction(prod(kernel_shape) * p["channels"], "the filter size (kernel · channels)")
    out = []
    for size, kernel, stride, dilation, before, after in axes:
        out.append(conv_output_size(p[size], p[before], p[after], p[kernel], p[stride], p[dilation]))
        need(out[-1] >= 1, f"the dilated {kernel} ({p[kernel]}, dilation {p[dilation]}) is larger than the padded "
             f"{size} ({p[size]} + {p[before]} + {p[after]})")
    f = p["filters"]
    return [Operand("input", layer.input, "int16", input_shape, ACTIVATIONS),
            _accumulator_output(layer, (*out, f)), *_weights(layer, (f, *kernel_shape, p["channels"]), (f,))]


def _maxpool(layer, p, generation):
    _positive(p, *PARAMS[Op.MAXPOOL])
    if not p["height"] == p["window_h"] == p["stride_h"] == 1:
        _needs_gna3(generation, "2-D pooling (height, window_h or stride_h above 1)")
    shape = (p["height"], p["width"], p["channels"])
    _multiple_of_8(prod(shape), "the input element count")
    need(p["window_h"] <= p["height"] and p["window_w"] <= p["width"],
         f"the window {p['window_h']}x{p['window_w']} is larger than the input {p['height']}x{p['width']}")
    out = ((p["height"] - p["window_h"]) // p["stride_h"] + 1, (p["width"] - p["window_w"]) // p["stride_w"] + 1,
           p["channels"])
    return [Operand("input", layer.input, "int16", shape, ACTIVATIONS),
            Operand("output", layer.output, "int16", out, ACTIVATIONS)]


def _pwl(layer, p, generation):
    _multiple_of_8(p["elements"], "elements")
    return [Operand("input", layer.input, "int32", (p["elements"],), ACTIVATIONS),
            Operand("output", layer.output, "int16", (p["elements"],), ACTIVATIONS)]


def _copy(layer, p, generation):
    _positive(p, "rows")
    _multiple_of_8(p["columns"], "columns")
    for stride in ("in_stride", "out_stride"):
        need(p[stride] >= p["columns"], f"{stride} {p[stride]} is below columns {p['columns']}")
    shape = (p["rows"], p["columns"])
    return [Operand("input", layer.input, "int16", shape, ACTIVATIONS, p["in_stride"]),
            Operand("output", layer.output, "int16", shape, ACTIVATIONS, p["out_stride"])]


def _transpose(layer, p, generation):
    _positive(p, "rows", "columns")
    _multiple_of_8(p["rows"] * p["columns"], "the element count rows · columns")
    return [Operand("input", layer.input, "int16", (p["rows"], p["columns"]), ACTIVATIONS),
            Operand("output", layer.output, "int16", (p["columns"], p["rows"]), ACTIVATIONS)]


_RULES = {Op.AFFINE: _affine, Op.AFFINE_MULTIBIAS: _affine, Op.DIAGONAL: _diagonal, Op.RECURRENT: _recurrent,
          Op.CONV1D: _conv, Op.CONV2D: _conv, Op.MAXPOOL: _maxpool, Op.PWL: _pwl, Op.COPY: _copy,
          Op.TRANSPOSE: _transpose}


def layer_operands(layer: LayerRecord, generation: str) -> tuple[dict, dict]:
    """(params by name, operands by role) of a layer record whose opcode is known; raises
    GnaFormatError (without the layer's name: the caller adds it) for any broken rule."""
    op = Op(layer.op)
    names = PARAMS[op]
    params = dict(zip(names, layer.params))
    need(not any(layer.params[len(names):]), f"parameters after the {len(names)} {op.name} uses must be 0, "
         f"got {list(layer.params)}")
    allowed_flags = FLAG_INT8_WEIGHTS if op in WEIGHTED_OPS else 0
    need(not layer.flags & ~allowed_flags, f"flags 0x{layer.flags:02x} are not valid for {op.name}")
    rule = PWL_RULE[op]
    need(rule != "required" or layer.pwl_count, f"{op.name} needs a PWL table")
    need(rule != "none" or not layer.pwl_count, f"{op.name} takes no PWL table, got {layer.pwl_count} segments")
    operands = {operand.role: operand for operand in _RULES[op](layer, params, generation)}
    for field in OPERAND_FIELDS:
        need(field in operands or getattr(layer, field) == 0, f"{op.name} does not use the {field} operand; "
             f"its address must be 0, got {getattr(layer, field)}")
    return params, operands
