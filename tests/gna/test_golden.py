"""Hand-computed integer results for every GNA instruction (docs/gna-isa.md), edge cases included.

Every expected number is worked out in the comment beside it, from the spec's text alone.
"""

import numpy as np
import pytest

import runtime.gna
from compiler.codegen.gna.encoder import encode
from compiler.codegen.gna.layers import (Activation, Affine, AffineMultiBias, Buffer, Conv1D, Conv2D, Copy, Diagonal,
                                         Endpoint, MaxPool, Program, Pwl, Recurrent, Transpose)
from runtime.gna.format import Section
from tests.gna.harness import buffer_for, io, program, run, run_layer, run_single

I16, I32 = np.int16, np.int32
IDENTITY = Pwl((0,), (0,), (1,), (0,))  # segment 0 reaches down to -inf: y = x
# Two segments: below 0, y = -50 + (x + 100) / 2; from 0, y = 3x / 4 (rounded, ties toward +inf).
TWO_SEGMENTS = Pwl((-100, 0), (-50, 0), (1, 3), (1, 2))
PWL_CASES = [  # (int32 x, int16 y)
    (-1000, -500),        # segment 0 left of its xBase: d = -900, (-900 + 1) >> 1 = -450; -50 - 450
    (-100, -50),          # d = 0
    (-1, 0),              # d = 99: (99 + 1) >> 1 = 50; -50 + 50
    (0, 0),               # segment 1, d = 0
    (1, 1),               # 3 -> (3 + 2) >> 2 = 1
    (5, 4),               # 15 -> 17 >> 2 = 4 (3.75 rounds to 4)
    (6, 5),               # 18 -> 20 >> 2 = 5 (4.5: tie goes up)
    (-3, -1),             # segment 0, d = 97: (97 + 1) >> 1 = 49; -50 + 49
    (100000, 32767),      # 300000 -> 75000, saturated to int16
    (-2**31, -32768),     # d = -2147483548 -> -1073741774; saturated low
]


def test_affine_int16_sums_exactly_and_saturates_once_after_the_bias():
    weights = np.zeros((4, 8), I16)
    weights[0] = 1                       # 1 + 2 + ... + 8 = 36, + bias 10 = 46
    weights[1, [0, 7]] = (-1, 2)         # -1 + 16 = 15, + bias -20 = -5
    weights[2] = [32767] * 4 + [-32768] * 4
    weights[3] = 32767
    bias = np.array([10, -20, 0, 2**31 - 1], I32)
    x = np.arange(1, 9)
    out = run_layer(lambda s, t: Affine("fc", s, t, weights, bias), [x], (1, 4), "int32")
    # row 2: 32767 * (1 + 2 + 3 + 4) - 32768 * (5 + 6 + 7 + 8) = 327670 - 851968 = -524298
    # row 3: 32767 * 36 + 2147483647 = 2148663259 -> saturated to 2147483647
    assert out.tolist() == [[46, -5, -524298, 2**31 - 1]]
    # Full-scale inputs: row 2's partial sums pass 2^31 (4 * 32767^2 = 4294705156) but the exact
    # total is 4 * 32767 * (32767 - 32768) = -131068: no clamping before the end.
    out = run_layer(lambda s, t: Affine("fc", s, t, weights, bias), [[32767] * 8], (1, 4), "int32")
    assert out.tolist() == [[32767 * 8 + 10, -32767 + 65534 - 20, -131068, 2**31 - 1]]


def test_affine_int8_weights_use_the_row_multiplier_and_batches_are_rows():
    weights = np.array([[1] * 8, [-128] * 8], np.int8)
    multipliers = np.array([3, 255], np.uint8)
    x = [np.arange(1, 9), np.full(8, -2)]
    out = run_layer(lambda s, t: Affine("fc", s, t, weights, np.zeros(2, I32), multipliers, batch=2), x, (2, 2),
                    "int32")
    # frame 0: 36 * 3 = 108 and 36 * (-128 * 255) = 36 * -32640 = -1175040; frame 1: -16 * 3, -16 * -32640
    assert out.tolist() == [[108, -1175040], [-48, 522240]]


def test_affine_multibias_takes_a_column_of_a_constant_or_a_run_time_matrix():
    weights = np.eye(8, dtype=I16)
    x = np.arange(8)
    matrix = np.array([[n, 100 * n, -n] for n in range(8)], I32)
    out = run_layer(lambda s, t: AffineMultiBias("fc", s, t, weights, matrix, bias_index=1), [x], (1, 8), "int32")
    assert out.tolist() == [[n + 100 * n for n in range(8)]]
    # Run time: the first layer's int32 output [1, 8] (x + 7) is the second layer's bias (stride 1, column 0).
    (source, target), partial = io((1, 8), (1, 8), "int32"), buffer_for("p", (1, 8), "int32")
    first = Affine("fc1", source, partial, weights, np.full(8, 7, I32))
    second = AffineMultiBias("fc2", source, target, 2 * weights, partial, bias_stride=1)
    out = run(program(source, (1, 8), target, (1, 8), "int32", first, second), [x])
    assert out.tolist() == [[3 * n + 7 for n in x]]


def test_diagonal_scales_each_element_and_saturates():
    weights = np.array([3, 3, -2, 1, 0, 32767, 32767, -32768], I16)
    bias = np.array([1, 1, 1, 0, -7, 2**31 - 1, 0, -2**31], I32)
    x = [100, -100, 7, 0, 5, 32767, -32768, 32767]
    out = run_layer(lambda s, t: Diagonal("scale", s, t, weights, bias), [x], (1, 8), "int32")
    # 301, -299, -13, 0, -7, 32767^2 + 2^31 - 1 -> 2^31 - 1 (saturated), -32768 * 32767 = -1073709056,
    # -32768 * 32767 - 2^31 -> -2^31 (saturated)
    assert out.tolist() == [[301, -299, -13, 0, -7, 2**31 - 1, -1073709056, -2**31]]


@pytest.mark.parametrize("x, y", PWL_CASES)
def test_pwl_fused_and_standalone_map_int32_to_int16(x, y):
    # A DIAGONAL with input 0 and weight 1 makes its accumulator exactly the bias: any int32 we like.
    bias = np.full(8, x, I32)
    fused = run_layer(lambda s, t: Diagonal("act", s, t, np.ones(8, I16), bias, pwl=TWO_SEGMENTS), [np.zeros(8)],
                      (1, 8))
    source, accumulator, target = buffer_for("x", (1, 8)), buffer_for("a", (8,), "int32"), buffer_for("y", (8,))
    layers = (Diagonal("acc", source, accumulator, np.ones(8, I16), bias),
              Activation("act", accumulator, target, elements=8, pwl=TWO_SEGMENTS))
    standalone = run(program(source, (1, 8), target, (8,), "int16", *layers), [np.zeros(8)])
    assert fused.tolist() == [[y] * 8] and standalone.tolist() == [y] * 8


def test_pwl_shift_47_and_slope_extremes():
    table = Pwl((-2**31,), (0,), (-32768,), (47,))
    # x = 2^31 - 1: d = 2^32 - 1; d * -32768 = -140737488322560; + 2^46 = -70368744144896;
    # >> 47 = floor(-0.49999...) = -1
    out = run_layer(lambda s, t: Diagonal("act", s, t, np.ones(8, I16), np.full(8, 2**31 - 1, I32), pwl=table),
                    [np.zeros(8)], (1, 8))
    assert out.tolist() == [[-1] * 8]


def _doubling_recurrent(state: Buffer):
    """A loaded model running h(t) = x(t) + 2 h(t-1) over 2 frames of 8."""
    weights = np.concatenate([np.eye(8), 2 * np.eye(8)], axis=1).astype(I16)
    source, target = io((2, 8), (2, 8))
    layer = Recurrent("rnn", source, target, weights, np.zeros(8, I32), pwl=IDENTITY, state=state, frames=2)
    return runtime.gna.load(encode(program(source, (2, 8), target, (2, 8), "int16", layer)))


def test_recurrent_feeds_back_and_keeps_state_in_the_state_section():
    x = [np.arange(1, 9), np.full(8, 10)]
    model = _doubling_recurrent(Buffer("h", 16, Section.STATE))
    first = model.infer_raw({"x": np.array(x, I16)})["y"]
    # h0 = x0 + 2 * 0 = 1..8; h1 = 10 + 2 * h0 = 12, 14, ..., 26
    assert first.tolist() == [list(range(1, 9)), list(range(12, 27, 2))]
    second = model.infer_raw({"x": np.array(x, I16)})["y"]
    # the state is h1 of the first inference: h0 = (1..8) + 2 * (12..26) = 25, 30, ..., 60; h1 = 10 + 2 * h0
    assert second.tolist() == [list(range(25, 61, 5)), list(range(60, 131, 10))]
    model.reset_state()
    assert model.infer_raw({"x": np.array(x, I16)})["y"].tolist() == first.tolist()


def test_recurrent_state_in_work_starts_from_zero_every_inference():
    model = _doubling_recurrent(Buffer("h", 16))
    x = np.array([np.arange(1, 9), np.full(8, 10)], I16)
    assert model.infer_raw({"x": x})["y"].tolist() == model.infer_raw({"x": x})["y"].tolist()


def _conv1d_weights():
    weights = np.zeros((4, 2, 4), I16)  # [filters, kernel, channels]
    weights[0] = 1                      # every tap
    weights[1, 0], weights[1, 1] = 1, -1
    weights[3, 0, 0] = 1                # tap 0, channel 0 only
    return weights, np.array([0, 0, 7, 0], I32)


@pytest.mark.parametrize("stride, dilation, pad, expected", [
    # x[t][c] = t + 1. Dilation 2: taps t and t + 2. f0 = 4 x[t] + 4 x[t+2]; f1 = 4 x[t] - 4 x[t+2];
    # f2 = bias 7; f3 = x[t][0]
    (1, 2, (0, 0), [[16, -8, 7, 1], [24, -8, 7, 2]]),
    # pad_begin 1: taps xp[t] and xp[t+2] with xp[0] = 0, xp[i] = x[i-1]; three outputs
    (1, 2, (1, 0), [[8, -8, 7, 0], [16, -8, 7, 1], [24, -8, 7, 2]]),
    (2, 2, (0, 0), [[16, -8, 7, 1]]),
    # dilation 1: taps t and t + 1 over 4 frames: 3 outputs
    (1, 1, (0, 0), [[12, -4, 7, 1], [20, -4, 7, 2], [28, -4, 7, 3]]),
])
def test_conv1d_stride_dilation_and_padding(stride, dilation, pad, expected):
    weights, bias = _conv1d_weights()
    x = [[t + 1] * 4 for t in range(4)]
    layer = Conv1D("tdnn", *io((4, 4), (len(expected), 4), "int32"), weights, bias, length=4, stride=stride,
                   dilation=dilation, pad=pad)
    out = run_single(layer, x, (len(expected), 4), "int32")
    assert out.tolist() == expected


def test_conv2d_with_padding_and_stride_on_gna3():
    weights = np.zeros((4, 2, 2, 2), I16)  # [filters, kh, kw, channels]
    weights[0] = 1
    weights[1, 1, 1, 1] = 1
    weights[2, 0, 0, 0] = -1
    weights[3] = 2
    bias = np.array([0, 0, -5, 1], I32)
    x = [[[0, 1], [10, 11]], [[20, 21], [30, 31]]]  # x[i][j][c] = 10 (2i + j) + c
    out = run_layer(lambda s, t: Conv2D("conv", s, t, weights, bias, height=2, width=2), x, (1, 1, 4), "int32",
                    generation="GNA3.0")
    # f0: sum of all = 124; f1: x[1][1][1] = 31; f2: -x[0][0][0] - 5 = -5; f3: 2 * 124 + 1
    assert out.tolist() == [[[124, 31, -5, 249]]]
    # Pads 1 all round and stride 2: each 2x2 window holds one input pixel, at kernel position (1 - oh, 1 - ow).
    out = run_layer(lambda s, t: Conv2D("conv", s, t, weights, bias, height=2, width=2, stride=(2, 2),
                                        pads=(1, 1, 1, 1)), x, (2, 2, 4), "int32", generation="GNA3.0")
    assert out.tolist() == [[[1, 1, -5, 3], [21, 0, -5, 43]], [[41, 0, -5, 83], [61, 0, -35, 123]]]


def test_maxpool_1d_and_2d():
    c0 = [1, 5, -3, 2, 9, -32768, 4, 0]
    x = [[[a, -1 - w] for w, a in enumerate(c0)]]  # [1, 8, 2]; channel 1 is -1, -2, ..., -8
    out = run_layer(lambda s, t: MaxPool("pool", s, t, width=8, channels=2, window=(1, 3), stride=(1, 2)), x, (1, 3, 2))
    # windows 0-2, 2-4, 4-6: channel 0 -> 5, 9, 9; channel 1 -> -1, -3, -5
    assert out.tolist() == [[[5, -1], [9, -3], [9, -5]]]
    x2 = [[[1, -4], [7, -3]], [[-2, -2], [3, -9]]]
    out = run_layer(lambda s, t: MaxPool("pool", s, t, height=2, width=2, channels=2, window=(2, 2)), x2, (1, 1, 2),
                    generation="GNA3.0")
    assert out.tolist() == [[[7, -2]]]


def test_copy_with_strides_leaves_the_rest_of_the_rows():
    x = np.arange(32).reshape(2, 16)
    out = run_layer(lambda s, t: Copy("copy", s, t, rows=2, columns=8, in_stride=16, out_stride=24), x, (2, 24))
    expected = np.zeros((2, 24), int)
    expected[0, :8], expected[1, :8] = range(8), range(16, 24)
    assert out.tolist() == expected.tolist()


def test_transpose_interleaves():
    out = run_layer(lambda s, t: Transpose("t", s, t, rows=2, columns=4), [[1, 2, 3, 4], [5, 6, 7, 8]], (4, 2))
    assert out.tolist() == [[1, 5], [2, 6], [3, 7], [4, 8]]


def test_endpoints_quantize_half_to_even_saturate_and_dequantize():
    source, target = io((1, 8), (1, 8), "int32")
    layer = Diagonal("id", source, target, np.ones(8, I16), np.zeros(8, I32))
    prog = Program((Endpoint("x", source, (1, 8), 2.0),), (Endpoint("y", target, (1, 8), 4.0, dtype="int32"),),
                   (layer,))
    model = runtime.gna.load(encode(prog))
    x = np.array([[0.25, 0.75, 1.25, -0.25, 20000.0, -1e9, 3.0, np.inf]], np.float32)
    # x * 2 = 0.5, 1.5, 2.5, -0.5 -> half to even 0, 2, 2, -0; 40000, -2e9, 6, inf -> 32767, -32768, 6, 32767
    raw = [0, 2, 2, 0, 32767, -32768, 6, 32767]
    assert model.infer_raw({"x": np.array([raw], I16)})["y"].tolist() == [raw]
    assert model.infer({"x": x})["y"].tolist() == [[v / 4 for v in raw]]


def test_fp32_mode_neither_rounds_nor_saturates():
    source, target = io((1, 8), (1, 8))
    layer = Diagonal("act", source, target, np.full(8, 32767, I16), np.zeros(8, I32), pwl=TWO_SEGMENTS)
    prog = Program((Endpoint("x", source, (1, 8), 1.0),), (Endpoint("y", target, (1, 8), 1.0),), (layer,))
    x = np.array([[0.0, 1 / 32767, 5 / 32767, 6 / 32767, 32767.0, 0, 0, 0]], np.float32)
    exact = runtime.gna.load(encode(prog)).infer({"x": x})["y"]
    emulated = runtime.gna.load(encode(prog), "fp32").infer({"x": x})["y"]
    # exact: inputs round to 0, 0, 0, 0, 32767; pwl(32767^2) saturates. fp32: x * 32767 stays 1, 5, 6 -> 3/4 x
    assert exact.tolist()[0][:5] == [0, 0, 0, 0, 32767]
    np.testing.assert_allclose(emulated[0][:5], [0, 0.75, 3.75, 4.5, 0.75 * 32767.0**2], rtol=1e-6)
