"""The two arithmetics the executor runs a stream in (docs/gna-isa.md, sections 3 and 8).

Kernels compute exact sums in `compute` precision and hand them here: `Exact` saturates them to
int32 and applies the PWL function bit for bit; `Fp32` does neither rounding nor saturation.
Float64 sums are exact: the ISA's limits keep every partial sum an integer below 2^47 (< 2^53).
"""

from __future__ import annotations

import numpy as np

INT16 = (-(1 << 15), (1 << 15) - 1)
INT32 = (-(1 << 31), (1 << 31) - 1)


class PwlTable:
    """One PWL table's segments as int64 columns, ready for vectorized lookup."""

    def __init__(self, segments: np.ndarray):
        self.x_base = segments["x_base"].astype(np.int64)
        self.y_base = segments["y_base"].astype(np.int64)
        self.slope = segments["slope"].astype(np.int64)
        self.shift = segments["shift"].astype(np.int64)

    def segment(self, x: np.ndarray) -> np.ndarray:
        """Index of the segment for each x: the last with xBase <= x; segment 0 below xBase[0]."""
        return np.maximum(np.searchsorted(self.x_base, x, side="right") - 1, 0)


class Exact:
    """Integer semantics. `saturated` counts clamped values when a trace asks for it (else None)."""

    compute = np.float64

    def __init__(self):
        self.saturated: int | None = None

    def _clamp(self, values: np.ndarray, bounds: tuple) -> np.ndarray:
        clamped = np.clip(values, *bounds)
        if self.saturated is not None:
            self.saturated += int(np.count_nonzero(clamped != values))
        return clamped

    def accumulate(self, sums: np.ndarray) -> np.ndarray:
        """sat32 of exact sums (float64 or integer) -> int64."""
        return self._clamp(sums, INT32).astype(np.int64)

    def activate(self, acc: np.ndarray, table: PwlTable | None) -> np.ndarray:
        """The layer's output from its int32 accumulators: as they are, or pwl(acc) as int16 values."""
        if table is None:
            return acc
        i = table.segment(acc)
        shift = table.shift[i]
        product = (acc - table.x_base[i]) * table.slope[i]  # |.| < 2^48: exact in int64
        rounded = (product + ((1 << shift) >> 1)) >> shift  # rshift_round: ties toward +inf
        return self._clamp(table.y_base[i] + rounded, INT16)

    def quantize(self, values: np.ndarray, scale: float) -> np.ndarray:
        """A float input endpoint's int16 values: sat16(round_half_even(x * scale))."""
        return self._clamp(np.rint(values.astype(np.float64) * np.float64(scale)), INT16).astype(np.int16)


class Fp32:
    """The same layers in float32, unrounded and unclamped: what the integer program means."""

    compute = np.float32
    saturated = None

    def accumulate(self, sums: np.ndarray) -> np.ndarray:
        return sums

    def activate(self, acc: np.ndarray, table: PwlTable | None) -> np.ndarray:
        if table is None:
            return acc
        acc = acc.astype(np.float64)
        i = table.segment(acc)
        return table.y_base[i] + (acc - table.x_base[i]) * table.slope[i] * np.exp2(-table.shift[i].astype(np.float64))

    def quantize(self, values: np.ndarray, scale: float) -> np.ndarray:
        return (values.astype(np.float64) * np.float64(scale)).astype(np.float32)
