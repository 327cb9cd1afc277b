"""Property tests: the vectorized executor against the plain-Python spec (spec_reference.py), bit for bit.

Shapes, flags, PWL tables and values are drawn at random; "full" values span the whole int16 /
int32 range so accumulators and PWL outputs saturate often, "small" ones mostly do not.
"""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import runtime.gna
from compiler.codegen.gna.encoder import encode
from compiler.codegen.gna.layers import (Activation, Affine, AffineMultiBias, Buffer, Conv1D, Conv2D, Copy, Diagonal,
                                         MaxPool, Pwl, Recurrent, Transpose)
from runtime.gna.format import Section
from tests.gna import spec_reference as spec
from tests.gna.harness import buffer_for, io, program, run, run_single

SETTINGS = settings(max_examples=25, deadline=None)


class Draw:
    """Random arrays from one seed, small or full-range."""

    def __init__(self, seed: int, full: bool):
        self.rng, self.full = np.random.default_rng(seed), full

    def ints(self, shape, dtype, small=300):
        info = np.iinfo(dtype)
        low, high = (info.min, info.max) if self.full else (max(info.min, -small), min(info.max, small))
        return self.rng.integers(low, high, shape, endpoint=True).astype(dtype)

    def weights(self, shape, int8: bool):
        """(weights, multipliers) of one output row per shape[0]."""
        if not int8:
            return self.ints(shape, np.int16), None
        return self.ints(shape, np.int8), self.rng.integers(0, 256, shape[0]).astype(np.uint8)

    def pwl(self) -> Pwl:
        count = int(self.rng.integers(1, 9)) if self.rng.random() < 0.9 else 128
        x_base = np.unique(self.ints(count, np.int32, small=1 << 20))
        y_base, slope = self.ints(len(x_base), np.int16), self.ints(len(x_base), np.int16)
        shift = self.rng.integers(0, 48 if self.full else 20, len(x_base))
        return Pwl(*(tuple(int(v) for v in column) for column in (x_base, y_base, slope, shift)))


cases = st.tuples(st.integers(0, 2**32 - 1), st.booleans())


def _weighted(draw: Draw, shape, rows, with_pwl, int8):
    weights, multipliers = draw.weights(shape, int8)
    return {"weights": weights, "bias": draw.ints(rows, np.int32), "multipliers": multipliers,
            "pwl": draw.pwl() if with_pwl else None}


@SETTINGS
@given(cases, st.integers(1, 8), st.sampled_from([8, 16, 24]), st.integers(1, 6), st.booleans(), st.booleans())
def test_affine(case, batch, inputs, outputs, int8, with_pwl):
    draw = Draw(*case)
    parts = _weighted(draw, (outputs, inputs), outputs, with_pwl, int8)
    x = draw.ints((batch, inputs), np.int16)
    dtype = "int16" if with_pwl else "int32"
    layer = Affine("fc", *io(x.shape, (batch, outputs), dtype), batch=batch, **parts)
    assert run_single(layer, x, (batch, outputs), dtype).tolist() == spec.affine(layer, x.tolist())


@SETTINGS
@given(cases, st.integers(1, 3), st.booleans())
def test_affine_multibias_constant_matrix(case, stride, with_pwl):
    draw = Draw(*case)
    parts = _weighted(draw, (5, 16), (5, stride), with_pwl, False)
    index = int(draw.rng.integers(0, stride))
    x = draw.ints((2, 16), np.int16)
    dtype = "int16" if with_pwl else "int32"
    layer = AffineMultiBias("fc", *io(x.shape, (2, 5), dtype), batch=2, bias_index=index, **parts)
    assert run_single(layer, x, (2, 5), dtype).tolist() == spec.affine(layer, x.tolist())


@SETTINGS
@given(cases, st.integers(1, 8), st.sampled_from([8, 16]), st.booleans(), st.booleans())
def test_diagonal(case, batch, elements, int8, with_pwl):
    draw = Draw(*case)
    parts = _weighted(draw, (elements,), elements, with_pwl, int8)
    x = draw.ints((batch, elements), np.int16)
    dtype = "int16" if with_pwl else "int32"
    layer = Diagonal("d", *io(x.shape, x.shape, dtype), batch=batch, **parts)
    assert run_single(layer, x, x.shape, dtype).tolist() == spec.diagonal(layer, x.tolist())


@SETTINGS
@given(cases, st.integers(1, 4), st.sampled_from([8, 16]), st.sampled_from([8, 16]), st.booleans())
def test_recurrent_over_two_inferences(case, frames, inputs, outputs, int8):
    draw = Draw(*case)
    parts = _weighted(draw, (outputs, inputs + outputs), outputs, True, int8)
    source, target = io((frames, inputs), (frames, outputs))
    layer = Recurrent("rnn", source, target, state=Buffer("h", outputs * 2, Section.STATE), frames=frames, **parts)
    model = runtime.gna.load(encode(program(source, (frames, inputs), target, (frames, outputs), "int16", layer)))
    state = [0] * outputs
    for _ in range(2):
        x = draw.ints((frames, inputs), np.int16)
        expected, state = spec.recurrent(layer, x.tolist(), state)
        assert model.infer_raw({"x": x})["y"].tolist() == expected


@SETTINGS
@given(cases, st.sampled_from([1, 2, 4, 8]), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.integers(0, 2), st.booleans(), st.booleans())
def test_conv1d(case, channels, taps, stride, dilation, pad_begin, pad_end, int8, with_pwl):
    draw = Draw(*case)
    kernel = taps * 8 // channels if channels < 8 else taps
    length = int(draw.rng.integers(1, 4)) * 8 // channels + dilation * (kernel - 1)
    assume(length * channels % 8 == 0)
    filters = int(draw.rng.choice([4, 8]))
    parts = _weighted(draw, (filters, kernel, channels), filters, with_pwl, int8)
    x = draw.ints((length, channels), np.int16)
    out_length = (length + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1
    dtype = "int16" if with_pwl else "int32"
    layer = Conv1D("c", *io(x.shape, (out_length, filters), dtype), length=length, stride=stride, dilation=dilation,
                   pad=(pad_begin, pad_end), **parts)
    assert run_single(layer, x, (out_length, filters), dtype).tolist() == spec.conv1d(layer, x.tolist())


@SETTINGS
@given(cases, st.sampled_from([2, 8]), st.integers(1, 4), st.integers(1, 4), st.integers(1, 2), st.integers(1, 2),
       st.integers(0, 1), st.booleans())
def test_conv2d(case, channels, height, width, stride, dilation, pad, with_pwl):
    draw = Draw(*case)
    kernel = (2, 2) if channels == 2 else (int(draw.rng.integers(1, 3)), int(draw.rng.integers(1, 3)))
    assume(height * width * channels % 8 == 0)
    out_h = (height + 2 * pad - dilation * (kernel[0] - 1) - 1) // stride + 1
    out_w = (width + 2 * pad - dilation * (kernel[1] - 1) - 1) // stride + 1
    assume(out_h >= 1 and out_w >= 1)
    parts = _weighted(draw, (4, *kernel, channels), 4, with_pwl, False)
    x = draw.ints((height, width, channels), np.int16)
    dtype, y_shape = "int16" if with_pwl else "int32", (out_h, out_w, 4)
    layer = Conv2D("c", *io(x.shape, y_shape, dtype), height=height, width=width, stride=(stride, stride),
                   dilation=(dilation, dilation), pads=(pad,) * 4, **parts)
    assert run_single(layer, x, y_shape, dtype, generation="GNA3.0").tolist() == spec.conv2d(layer, x.tolist())


@SETTINGS
@given(cases, st.integers(1, 3), st.integers(1, 6), st.sampled_from([4, 8]), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 2), st.integers(1, 2))
def test_maxpool(case, height, width, channels, window_h, window_w, stride_h, stride_w):
    assume(height * width * channels % 8 == 0 and window_h <= height and window_w <= width)
    x = Draw(*case).ints((height, width, channels), np.int16)
    y_shape = ((height - window_h) // stride_h + 1, (width - window_w) // stride_w + 1, channels)
    layer = MaxPool("p", *io(x.shape, y_shape), height, width, channels, (window_h, window_w), (stride_h, stride_w))
    assert run_single(layer, x, y_shape, generation="GNA3.0").tolist() == spec.maxpool(layer, x.tolist())


@SETTINGS
@given(cases, st.sampled_from([8, 16, 32]))
def test_standalone_pwl(case, elements):
    draw = Draw(*case)
    table, values = draw.pwl(), draw.ints(elements, np.int32)
    (source, target), accumulator = io((1, elements), (elements,)), buffer_for("a", (elements,), "int32")
    layers = (Diagonal("acc", source, accumulator, np.ones(elements, np.int16), values),  # acc = bias: any int32
              Activation("act", accumulator, target, elements=elements, pwl=table))
    out = run(program(source, (1, elements), target, (elements,), "int16", *layers), np.zeros((1, elements)))
    assert out.tolist() == spec.activation(layers[1], values.tolist())


@SETTINGS
@given(cases, st.integers(1, 4), st.sampled_from([8, 16]), st.integers(0, 9), st.integers(0, 9))
def test_copy(case, rows, columns, in_extra, out_extra):
    in_stride, out_stride = columns + in_extra, columns + out_extra
    x = Draw(*case).ints((rows, in_stride), np.int16)
    layer = Copy("c", *io(x.shape, (rows, out_stride)), rows, columns, in_stride, out_stride)
    expected = spec.copy(layer, x.reshape(-1).tolist(), [0] * rows * out_stride)  # WORK starts zeroed
    assert run_single(layer, x, (rows, out_stride)).reshape(-1).tolist() == expected


TRANSPOSABLE = [(rows, columns) for rows in range(1, 10) for columns in range(1, 10) if rows * columns % 8 == 0]
"""Shapes a GNA transpose takes (whole groups of 8 elements): drawn from directly, since filtering 81
pairs down to these with assume() trips hypothesis's filter health check now and then."""


@SETTINGS
@given(cases, st.sampled_from(TRANSPOSABLE))
def test_transpose(case, shape):
    rows, columns = shape
    x = Draw(*case).ints((rows, columns), np.int16)
    layer = Transpose("t", *io(x.shape, (columns, rows)), rows, columns)
    assert run_single(layer, x, (columns, rows)).tolist() == spec.transpose(layer, x.tolist())
