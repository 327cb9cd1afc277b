"""One vectorized kernel per GNA op (docs/gna-isa.md, section 5).

`prepare(layer, memory, arithmetic)` does the per-layer work once at load (effective weights,
transposed for BLAS, in the arithmetic's compute dtype; gather indices for windows) and returns
a function of no arguments that runs the layer over the live memory. Products and sums are
exact in float64 (see arithmetic.py); `Exact` then saturates and applies the PWL table.
"""

from __future__ import annotations

import numpy as np

from runtime.gna.arithmetic import PwlTable
from runtime.gna.format import Op, Section
from runtime.gna.memory import Memory
from runtime.gna.reader import Layer


def _weights(layer: Layer, memory: Memory, dtype) -> np.ndarray:
    """Effective weights: int16 as stored, or int8 times its row's uint8 multiplier."""
    weights = memory.constant(layer.operands["weights"]).astype(dtype)
    if "multipliers" in layer.operands:
        multipliers = memory.constant(layer.operands["multipliers"]).astype(dtype)
        weights *= multipliers.reshape((-1,) + (1,) * (weights.ndim - 1))
    return weights


def _bias(layer: Layer, memory: Memory, dtype):
    """A function giving the bias vector: a constant, or (AFFINE_MULTIBIAS) a column of a live buffer."""
    operand = layer.operands["bias"]
    if layer.op != Op.AFFINE_MULTIBIAS:
        bias = memory.constant(operand).astype(dtype)
        return lambda: bias
    column = memory.read(operand)[:, layer.params["bias_index"]]
    if memory.section_of(operand) == Section.CONST:
        column = column.astype(dtype)
        return lambda: column
    return lambda: column.astype(dtype)


def _pwl(layer: Layer) -> PwlTable | None:
    return None if layer.pwl is None else PwlTable(layer.pwl)


def _affine(layer, memory, arithmetic):
    dtype, table = arithmetic.compute, _pwl(layer)
    x, out = memory.view(layer.operands["input"]), memory.view(layer.operands["output"])
    if layer.op == Op.DIAGONAL:
        weights = _weights(layer, memory, dtype)
        product = lambda: x.astype(dtype) * weights  # noqa: E731
    else:
        weights_t = np.ascontiguousarray(_weights(layer, memory, dtype).T)
        product = lambda: x.astype(dtype) @ weights_t  # noqa: E731
    bias = _bias(layer, memory, dtype)

    def run():
        out[...] = arithmetic.activate(arithmetic.accumulate(product() + bias()), table)
    return run


def _recurrent(layer, memory, arithmetic):
    dtype, table = arithmetic.compute, _pwl(layer)
    x, out, state = (memory.view(layer.operands[role]) for role in ("input", "output", "state"))
    weights = _weights(layer, memory, dtype)
    inputs = layer.params["inputs"]
    w_in, w_feedback = np.ascontiguousarray(weights[:, :inputs].T), np.ascontiguousarray(weights[:, inputs:].T)
    bias = _bias(layer, memory, dtype)

    def run():
        from_inputs = x.astype(dtype) @ w_in + bias()  # every frame at once; only feedback is sequential
        previous = state.astype(dtype)
        for t in range(len(out)):
            out[t] = arithmetic.activate(arithmetic.accumulate(from_inputs[t] + previous @ w_feedback), table)
            previous = out[t].astype(dtype)
        state[...] = out[-1]
    return run


def _window_indices(size_out: int, stride: int, window: int, dilation: int) -> np.ndarray:
    """[output position, window offset] -> input position."""
    return np.arange(size_out)[:, None] * stride + np.arange(window)[None, :] * dilation


def _conv_geometry(layer: Layer) -> dict:
    """CONV1D as a CONV2D of height 1: everything the 2-D kernel needs."""
    p = layer.params
    if layer.op == Op.CONV1D:
        return {"height": 1, "width": p["length"], "kernel_h": 1, "kernel_w": p["kernel"], "stride_h": 1,
                "stride_w": p["stride"], "dilation_h": 1, "dilation_w": p["dilation"], "pad_top": 0,
                "pad_left": p["pad_begin"], "pad_bottom": 0, "pad_right": p["pad_end"], "channels": p["channels"]}
    return p


def _conv(layer, memory, arithmetic):
    dtype, table, g = arithmetic.compute, _pwl(layer), _conv_geometry(layer)
    x = memory.view(layer.operands["input"]).reshape(g["height"], g["width"], g["channels"])
    out = memory.view(layer.operands["output"])
    weights = _weights(layer, memory, dtype)
    weights_t = np.ascontiguousarray(weights.reshape(len(weights), -1).T)
    bias = _bias(layer, memory, dtype)
    out_h, out_w = (out.shape[0], out.shape[1]) if out.ndim == 3 else (1, out.shape[0])
    rows = _window_indices(out_h, g["stride_h"], g["kernel_h"], g["dilation_h"])
    columns = _window_indices(out_w, g["stride_w"], g["kernel_w"], g["dilation_w"])
    padded = np.zeros((g["height"] + g["pad_top"] + g["pad_bottom"], g["width"] + g["pad_left"] + g["pad_right"],
                       g["channels"]), dtype)
    inside = padded[g["pad_top"]: g["pad_top"] + g["height"], g["pad_left"]: g["pad_left"] + g["width"]]

    def run():
        inside[...] = x
        patches = padded[rows[:, None, :, None], columns[None, :, None, :]]  # [oh, ow, kh, kw, c]
        sums = patches.reshape(out_h * out_w, -1) @ weights_t + bias()
        out[...] = arithmetic.activate(arithmetic.accumulate(sums), table).reshape(out.shape)
    return run


def _maxpool(layer, memory, arithmetic):
    p = layer.params
    x, out = memory.view(layer.operands["input"]), memory.view(layer.operands["output"])
    rows = _window_indices(out.shape[0], p["stride_h"], p["window_h"], 1)
    columns = _window_indices(out.shape[1], p["stride_w"], p["window_w"], 1)

    def run():
        out[...] = x[rows[:, None, :, None], columns[None, :, None, :]].max(axis=(2, 3))
    return run


def _activation(layer, memory, arithmetic):
    x, out, table = memory.view(layer.operands["input"]), memory.view(layer.operands["output"]), _pwl(layer)

    def run():
        out[...] = arithmetic.activate(arithmetic.accumulate(x), table)
    return run


def _copy(layer, memory, arithmetic):
    x, out = memory.view(layer.operands["input"]), memory.view(layer.operands["output"])
    flip = layer.op == Op.TRANSPOSE

    def run():
        out[...] = np.array(x.T if flip else x)  # read all before writing: in and out may overlap
    return run


KERNELS = {Op.AFFINE: _affine, Op.AFFINE_MULTIBIAS: _affine, Op.DIAGONAL: _affine, Op.RECURRENT: _recurrent,
           Op.CONV1D: _conv, Op.CONV2D: _conv, Op.MAXPOOL: _maxpool, Op.PWL: _activation, Op.COPY: _copy,
           Op.TRANSPOSE: _copy}


def prepare(layer: Layer, memory: Memory, arithmetic):
    """A function that runs `layer` over `memory` in `arithmetic`."""
    return KERNELS[layer.op](layer, memory, arithmetic)
