"""The fp16 report's output error (against hand-computed figures) and its printed form."""

import math

import numpy as np

from compiler.precision.fp16_report import format_report, output_error


def test_output_error_figures():
    expected = [np.array([3.0, -4.0], np.float32), np.array([[0.0]], np.float32)]
    actual = [np.array([3.0, -4.5], np.float32), np.array([[0.0]], np.float32)]
    error = output_error(expected, actual)
    assert error == {"max_abs": 0.5, "max_relative": 0.5 / 4, "snr_db": 10 * math.log10(25 / 0.25), "non_finite": 0}
    assert output_error(expected, expected)["snr_db"] is None


def test_overflow_counts_as_non_finite_and_stays_out_of_the_figures():
    expected = [np.array([1.0, 70000.0, np.inf, np.nan], np.float32)]
    actual = [np.array([1.0, np.inf, np.inf, np.nan], np.float32)]
    error = output_error(expected, actual)
    assert error["non_finite"] == 1 and error["max_abs"] == 0.0


def test_format_report():
    report = {"target": "gpu", "checked_on": "2 sample(s) of data.npz", "activations": "float16 storage",
              "weights": {"float32_bytes": 4000, "stored_bytes": 2100, "ratio": 0.525},
              "kept_nodes": [{"node": "conv9", "op": "Conv", "why": "overflow: output 0 reaches |7e+04| > 65504"}],
              "kept_weights": [{"weight": "w9", "why": "read by 'conv9', which computes in float32"}],
              "output_error": {"max_abs": 0.01, "max_relative": 0.002, "snr_db": 51.25, "non_finite": 3}}
    assert format_report(report).splitlines() == [
        "fp16 (gpu): weights 4,000 -> 2,100 bytes (0.53x); checked on 2 sample(s) of data.npz",
        "  activations: float16 storage",
        "  kept float32: node 'conv9' (Conv): overflow: output 0 reaches |7e+04| > 65504",
        "  kept float32: weight 'w9': read by 'conv9', which computes in float32",
        "  output error vs float32: max abs 0.01, max relative 0.002, SNR 51.2 dB, 3 element(s) inf/NaN unlike float32"]
    report["output_error"] = {"not_measured": "device 'x' lacks cl_khr_fp16"}
    assert format_report(report).splitlines()[-1] == "  output error: not measured here (device 'x' lacks cl_khr_fp16)"
