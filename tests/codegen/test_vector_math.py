"""float32 exp, log, tanh, erf and sigmoid (kernels/vector_math.py) against float64 numpy/math over a dense sweep.

The sweep takes every 1999th positive float32 bit pattern (denormals to the largest finite value)
with both signs, a fine grid over [-20, 20], and the edge values: zeros, infinities, NaN, the
least denormal and normal, and the thresholds where a function changes formula or saturates.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import compiler
import runtime
from tests.codegen.kernel_harness import node_model

EDGES = np.array([0.0, np.inf, np.nan, 1e-45, 1.1754942e-38, 1.1754944e-38, 3.4028235e38, 88.72283, 88.72284,
                  89.0, 103.9, 104.0, 0.55, 0.5499999, 1.0, 0.99999994, 3.92, 4.0, 9.0], np.float32)


def _sweep() -> np.ndarray:
    positive = np.arange(0, 0x7F800000, 1999, dtype=np.uint32).view(np.float32)
    return np.concatenate([positive, -positive, EDGES, -EDGES, np.linspace(-20, 20, 200001, dtype=np.float32)])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


# op -> (float64 reference, largest error in float32 ulps allowed; the measured maxima are in vector_math.py)
FUNCTIONS = {
    "Exp": (np.exp, 1.5),
    "Log": (np.log, 2.0),
    "Tanh": (np.tanh, 2.0),
    "Erf": (lambda x: np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64), 2.5),
    "Sigmoid": (_sigmoid, 3.0),
}


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the float32 spacing at want (2**-149 for denormal results)."""
    spacing = np.spacing(np.abs(want.astype(np.float32))).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


@pytest.mark.parametrize("op", FUNCTIONS)
def test_float32_error_over_a_dense_sweep(op):
    reference, bound = FUNCTIONS[op]
    x = _sweep()
    got = runtime.load(compiler.compile(node_model(op, {"x": x}), target="cpu")).infer({"x": x})["y"]
    with np.errstate(all="ignore"):
        want = reference(x.astype(np.float64))
        rounded = want.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(rounded), err_msg=f"{op}: NaN where float64 has none")
    infinite = np.isinf(rounded)
    np.testing.assert_array_equal(got[infinite], rounded[infinite], err_msg=f"{op}: overflow")
    finite = np.isfinite(rounded)
    errors = _ulps(got[finite], want[finite])
    worst = int(np.argmax(errors))
    assert errors[worst] <= bound, f"{op}({x[finite][worst]!r}) = {got[finite][worst]!r}, float64 gives " \
                                   f"{want[finite][worst]!r}: {errors[worst]:.2f} ulp"


@pytest.mark.parametrize("op", FUNCTIONS)
def test_signed_zeros(op):
    x = np.array([0.0, -0.0], np.float32)
    got = runtime.load(compiler.compile(node_model(op, {"x": x}), target="cpu")).infer({"x": x})["y"]
    with np.errstate(divide="ignore", invalid="ignore"):
        want = FUNCTIONS[op][0](x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("op, symbol", [("Exp", "expf"), ("Log", "logf"), ("Tanh", "tanhf"), ("Erf", "erff"),
                                        ("Sigmoid", "expf")])
def test_float32_kernels_call_no_libm(op, symbol):
    """A libm call per element would keep the loop scalar: the library imports none.
    (The names a shared library imports are NUL-terminated strings in it; Mach-O prefixes an underscore.)"""
    x = np.ones((4, 16), np.float32)
    library = compiler.compile(node_model(op, {"x": x}), target="cpu").files["model.so"]
    assert not re.search(rb"[\x00_]" + symbol.encode() + rb"\x00", library)


def test_float64_keeps_libm_accuracy():
    x = np.linspace(-6, 6, 1001)
    got = runtime.load(compiler.compile(node_model("Erf", {"x": x}), target="cpu")).infer({"x": x})["y"]
    np.testing.assert_allclose(got, np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64), rtol=1e-15, atol=1e-16)
