"""Scale factors and integer weights for the GNA target (design.md, "GNA facts").

Real value = integer / scale. Inputs map their largest magnitude to 16384 (half of int16, so values
a little beyond the calibrated range still fit); int16 weights map theirs to 16384; int8 weights to
±127 with a uint8 multiplier per output row (effective weight w8 · m ≈ w · Sw); biases are int32 at
the accumulator's scale Sx · Sw. Overflow-safe output scaling: when the calibrated accumulator range
times Sx · Sw would pass 2^30 (half of int32), the weight scale is lowered until it does not.
Activation outputs use 2048, lowered when the output range would pass 16384.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_PEAK = 16384.0
WEIGHT_PEAK = {"int16": 16384.0, "int8": 127.0}
ACCUMULATOR_PEAK = float(2 ** 30)
ACTIVATION_SCALE = 2048.0
WEIGHT_TYPES = tuple(WEIGHT_PEAK)


def input_scale(peak: float) -> float:
    """Scale of an int16 input whose calibrated largest magnitude is `peak`."""
    return INPUT_PEAK / peak if peak > 0 else INPUT_PEAK


def activation_scale(peak: float, preferred: float = ACTIVATION_SCALE) -> float:
    """Scale of an int16 layer output: `preferred` unless the range would pass INPUT_PEAK."""
    return min(preferred, INPUT_PEAK / peak) if peak > 0 else preferred


@dataclass(frozen=True)
class Weights:
    """Integer weights with their scale: `values` int16 or int8, `multipliers` uint8 per row (int8 only)."""

    values: np.ndarray
    multipliers: np.ndarray | None
    scale: float


def quantize_weights(weights: np.ndarray, in_scale: float, out_peak: float, kind: str = "int16") -> Weights:
    """`weights` [rows, ...] (float) as integers. `out_peak` is the largest real accumulator magnitude
    expected (calibration); the scale is capped so out_peak · in_scale · Sw stays below 2^30."""
    if kind not in WEIGHT_PEAK:
        raise ValueError(f"gna_weights {kind!r}: use one of {', '.join(WEIGHT_TYPES)}")
    weights = np.asarray(weights, np.float64)
    peak = float(np.max(np.abs(weights))) if weights.size else 0.0
    scale = WEIGHT_PEAK["int16"] / peak if peak > 0 else 1.0
    if out_peak > 0:
        scale = min(scale, ACCUMULATOR_PEAK / (out_peak * in_scale))
    scaled = weights * scale
    if kind == "int16":
        return Weights(np.clip(np.rint(scaled), -32767, 32767).astype(np.int16), None, scale)
    rows = scaled.reshape(len(scaled), -1)
    row_peak = np.max(np.abs(rows), axis=1) if rows.size else np.zeros(len(rows))
    multipliers = np.clip(np.ceil(row_peak / WEIGHT_PEAK["int8"]), 1, 255)
    values = np.clip(np.rint(rows / multipliers[:, None]), -127, 127).astype(np.int8).reshape(weights.shape)
    return Weights(values, multipliers.astype(np.uint8), scale)


def quantize_bias(bias: np.ndarray, scale: float) -> np.ndarray:
    """An int32 bias at the accumulator's scale."""
    return np.clip(np.rint(np.asarray(bias, np.float64) * scale), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
