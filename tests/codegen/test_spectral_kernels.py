"""cpu DFT (opsets 17 and 20) and STFT kernels against the ref target and ONNX Runtime, at 1 and 2
threads. Lengths cover every FFT radix (4, 2, 3, 5, other primes) and a prime-length direct DFT."""

import numpy as np
import onnxruntime
import pytest
from onnx import helper, numpy_helper

import compiler
from compiler.codegen.llvm.kernels.spectral import radices
from compiler.driver import UnsupportedByTargetError
from tests.codegen.kernel_harness import TOLERANCE, assert_cpu_matches_ref, random, run_cpu


def model_of(op_type: str, x: np.ndarray, constants: list, attrs: dict, opset: int, extra_feeds: dict | None = None):
    """`op_type`(x, *constants); a constant is an array, None (absent input) or a name in extra_feeds."""
    names, initializers = ["x"], []
    for index, value in enumerate(constants):
        if value is None or isinstance(value, str):
            names.append(value or "")
        else:
            names.append(f"c{index}")
            initializers.append(numpy_helper.from_array(np.asarray(value), f"c{index}"))
    feeds = {"x": x, **(extra_feeds or {})}
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
              for name, value in feeds.items()]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    graph = helper.make_graph([node], op_type.lower(), inputs, [helper.make_value_info("y", helper.TypeProto())],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), feeds


def check(model, feeds, onnxruntime_too: bool = True) -> None:
    actual = assert_cpu_matches_ref(model, feeds)
    if onnxruntime_too:
        expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
        np.testing.assert_allclose(actual["y"], expected, rtol=1e-3, atol=1e-3)  # it sums in float32


def test_radices_factor_the_length():
    assert radices(1) == []
    assert radices(64) == [4, 4, 4]
    assert radices(120) == [4, 2, 3, 5]
    assert radices(7 * 11 * 11) == [7, 11, 11]
    assert radices(97) == [97]


# (signal shape without the complex dim, axis)
SIGNALS = [((2, 16, 3), 1), ((2, 3, 12), 2), ((1, 30), 1), ((3, 7, 2), 1), ((1, 1, 13), 2), ((60, 2), 0),
           ((2, 1, 4), 1), ((1, 11, 11), 1)]


@pytest.mark.parametrize("inverse, onesided, components", [(0, 0, 1), (0, 0, 2), (0, 1, 1), (1, 0, 1), (1, 0, 2)])
@pytest.mark.parametrize("shape, axis", SIGNALS)
def test_dft_opset17(shape, axis, inverse, onesided, components):
    x = random((*shape, components))
    model, feeds = model_of("DFT", x, [], {"axis": axis, "inverse": inverse, "onesided": onesided}, 17)
    check(model, feeds)


@pytest.mark.parametrize("length", [5, 12, 17, 32])
@pytest.mark.parametrize("inverse, onesided", [(0, 0), (0, 1), (1, 0)])
def test_dft_length_pads_or_truncates(length, inverse, onesided):
    x = random((2, 12, 1 if onesided else 2), seed=3)
    model, feeds = model_of("DFT", x, [np.int64(length)], {"axis": 1, "inverse": inverse, "onesided": onesided}, 17)
    check(model, feeds)


@pytest.mark.parametrize("axis", [None, 1, -2, -3, 0])
def test_dft_opset20_axis_input(axis):
    x = random((4, 6, 10, 2), seed=4)
    constants = [None] if axis is None else [None, np.int64(axis)]
    check(*model_of("DFT", x, constants, {}, 20))


@pytest.mark.parametrize("size, length", [(6, None), (6, 11), (5, 8), (9, 4)])
def test_inverse_onesided_dft_is_irfft(size, length):
    """onnx.reference's inverse one-sided DFT: a Hermitian spectrum back to a real signal."""
    x = random((2, size, 3, 2), seed=5)
    constants = [None if length is None else np.int64(length), np.int64(1)]
    check(*model_of("DFT", x, constants, {"inverse": 1, "onesided": 1}, 20), onnxruntime_too=False)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_dft_other_float_dtypes(dtype):
    x = random((3, 20, 2), dtype=dtype, seed=6)
    model, feeds = model_of("DFT", x, [], {"axis": 1}, 17)
    expected = np.fft.fft(x[..., 0].astype(np.float64) + 1j * x[..., 1], axis=1)
    actual = run_cpu(model, feeds)["y"]
    assert actual.dtype == dtype
    tolerance = {"rtol": 1e-2, "atol": 5e-2} if dtype == np.float16 else TOLERANCE
    np.testing.assert_allclose(actual.astype(np.float64), np.stack([expected.real, expected.imag], -1), **tolerance)


@pytest.mark.parametrize("onesided", [1, 0])
@pytest.mark.parametrize("window", [True, False])
@pytest.mark.parametrize("length, step, frame", [(128, 8, 16), (100, 7, 12), (64, 64, 64), (50, 3, 9)])
def test_stft(length, step, frame, window, onesided):
    x = random((2, length, 1), seed=7)
    constants = [np.int64(step), np.hanning(frame).astype(np.float32) if window else None,
                 None if window else np.int64(frame)]
    check(*model_of("STFT", x, constants, {"onesided": onesided}, 17))


def test_stft_complex_signal_with_a_run_time_window():
    x = random((1, 40, 2), seed=8)
    window = np.hamming(10).astype(np.float32)
    check(*model_of("STFT", x, [np.int64(5), "window"], {"onesided": 0}, 17, {"window": window}))


def test_run_time_axis_is_refused():
    model, _ = model_of("DFT", random((1, 16, 4, 1)), [None, "axis"], {}, 20, {"axis": np.array(1, np.int64)})
    with pytest.raises(UnsupportedByTargetError, match="DFT with axis computed at run time"):
        compiler.compile(model, target="cpu")


def test_long_lines_are_refused():
    model, _ = model_of("DFT", random((1, 16, 1)), [np.int64(1 << 15)], {}, 17)
    with pytest.raises(UnsupportedByTargetError, match="DFT of length 32768"):
        compiler.compile(model, target="cpu")
