"""Scales and zero points of the QDQ format ONNX Runtime's quantize_static writes (Q_COMMON contract).

- activations: uint8, asymmetric, per tensor: the range widened to hold 0, scale = range / 255,
  zero point = round(-low / scale);
- weights: int8, symmetric (zero point 0) per output channel, scale = max |w| / 127 (values in
  [-127, 127]);
- bias: int32, zero point 0, scale = input scale * weight scale of its channel.
Scales never reach 0 or a subnormal: an all-zero channel or a zero-width range gets scale 1 (every
value is then exactly 0), as ORT does. A bias too large for int32 at scale s_x * s_w, or an
s_x * s_w that float32 cannot hold, raises that channel's weight scale until it fits, so the
contract (bias scale = s_x * s_w) always holds. Rounding is half to even, as QuantizeLinear's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TINY = float(np.finfo(np.float32).tiny)
INT32_MAX = float(np.iinfo(np.int32).max)


@dataclass(frozen=True)
class ActivationParams:
    scale: np.float32
    zero_point: np.uint8


@dataclass(frozen=True)
class LinearWeights:
    """int8 weights with their per-channel scales, and the int32 bias (None without one)."""

    weights: np.ndarray
    scale: np.ndarray
    axis: int
    bias: np.ndarray | None
    bias_scale: np.ndarray | None


def activation_params(low: float, high: float) -> ActivationParams:
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / 255.0
    if scale < TINY:
        return ActivationParams(np.float32(1.0), np.uint8(0))
    return ActivationParams(np.float32(scale), np.uint8(np.clip(np.rint(-low / scale), 0, 255)))


def _per_channel(vector: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """A [channels] vector shaped to broadcast along `axis` of a tensor of `rank` dims."""
    shape = [1] * rank
    shape[axis] = -1
    return vector.reshape(shape)


def quantize_linear_weights(weights: np.ndarray, axis: int, input_scale: np.float32,
                            bias: np.ndarray | None = None) -> LinearWeights:
    """int8 per-channel weights along `axis`; with `bias` (one value per channel), its int32 form."""
    weights = np.asarray(weights, np.float64)
    reduce = tuple(i for i in range(weights.ndim) if i != axis)
    scale = np.abs(weights).max(axis=reduce, initial=0.0) / 127.0
    scale = np.where(scale < TINY, 1.0, scale)
    if bias is not None:
        bias = np.asarray(bias, np.float64).reshape(-1)
        floor = np.maximum(np.abs(bias) / (float(input_scale) * INT32_MAX), TINY / float(input_scale))
        scale = np.maximum(scale, floor * (1 + 1e-6))
    scale = scale.astype(np.float32)
    steps = weights / _per_channel(scale.astype(np.float64), axis, weights.ndim)
    quantized = np.clip(np.rint(steps), -127, 127).astype(np.int8)
    if bias is None:
        return LinearWeights(quantized, scale, axis, None, None)
    bias_scale = (np.float32(input_scale) * scale).astype(np.float32)
    bias_quantized = np.clip(np.rint(bias / bias_scale.astype(np.float64)), -INT32_MAX - 1, INT32_MAX)
    return LinearWeights(quantized, scale, axis, bias_quantized.astype(np.int32), bias_scale)
