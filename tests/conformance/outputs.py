"""Comparing Kiln's outputs with a case's expected outputs (tensors, sequences, optionals, strings)."""

from __future__ import annotations

import numpy as np

from frontends.onnx.backend import as_value

# Narrow float types numpy cannot compare directly; compare them widened to float64.
_WIDEN = ("bfloat16", "float8", "float4", "int4", "uint4", "int2", "uint2")


def _widened(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float64) if str(array.dtype).startswith(_WIDEN) else array


def assert_value_matches(actual, expected, rtol: float, atol: float, where: str) -> None:
    expected = as_value(expected)
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: expected a sequence of {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_value_matches(a, e, rtol, atol, f"{where}[{i}]")
        return
    if expected is None:
        assert actual is None, f"{where}: expected an empty optional"
        return
    actual = np.asarray(actual)
    assert actual.dtype == expected.dtype or (actual.dtype.kind in "OUS" and expected.dtype.kind in "OUS"), \
        f"{where}: dtype {actual.dtype}, expected {expected.dtype}"
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape}, expected {expected.shape}"
    if expected.dtype.kind in "OUS":
        assert actual.tolist() == expected.tolist(), f"{where}: strings differ"
        return
    np.testing.assert_allclose(_widened(actual), _widened(expected), rtol=rtol, atol=atol, err_msg=where)
