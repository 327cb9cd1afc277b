"""Activation ranges for quantization: run the float graph over samples, estimate each value's range.

Methods (`calibration_method`):
- minmax: the smallest and largest value seen (ONNX Runtime's default; no histogram kept).
- percentile: the range holding p % of the values (p = 99.999 by default; half the rest cut from
  each tail), so rare outliers are clipped instead of stretching the scale for every other value.
- entropy: TensorRT's method: over the histogram of |x|, the clip threshold t whose quantized
  distribution (clipped mass moved into the last bin, then merged into as many levels as the
  range will get) diverges least (Kullback-Leibler) from the unquantized one.
- mse: the range [a * min, a * max] (a in (0, 1]) whose expected quantization error over the
  histogram is smallest: uniform rounding noise scale^2 / 12 inside, squared distance to the
  clip bound outside.
Histograms (histogram.py) grow across samples in bounded memory.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.quantization.histogram import Histogram
from compiler.quantization.probe import Probe, samples

METHODS = ("minmax", "percentile", "entropy", "mse")
DEFAULT_PERCENTILE = 99.999
MSE_STEPS = 100
ENTROPY_CANDIDATES = 256


class RangeError(ValueError):
    """Calibration could not measure a value (unknown method, non-finite values)."""


def minmax_range(histogram: Histogram) -> tuple[float, float]:
    return histogram.low, histogram.high


def percentile_range(histogram: Histogram, percentile: float = DEFAULT_PERCENTILE) -> tuple[float, float]:
    """p % of the values inside, (100 - p) / 2 % cut from each tail (as ORT's percentile calibrator): the
    lower edge of the bin holding the low cut point, the upper edge of the bin holding the high one."""
    if histogram.width == 0.0:
        return minmax_range(histogram)
    cut = (100.0 - percentile) / 200.0
    cumulative = np.cumsum(histogram.counts) / histogram.total
    edges = histogram.edges()
    low = edges[np.searchsorted(cumulative, cut)]
    high = edges[np.searchsorted(cumulative, 1.0 - cut) + 1]
    return max(float(low), histogram.low), min(float(high), histogram.high)


def _divergence(counts: np.ndarray, bins: int, levels: int) -> float:
    """KL(P || Q) for a clip at `bins` bins: P the first `bins` counts with the clipped rest added to the
    last; Q merges the unclipped counts into `levels` groups of neighbouring bins and spreads each group's
    mass evenly over its non-empty bins (TensorRT's construction). Where Q is empty and P is not (clipped
    mass landing on an empty bin), Q gets a tiny mass instead of an infinite divergence."""
    kept = counts[:bins].astype(np.float64)
    reference = kept.copy()
    reference[-1] += counts[bins:].sum()
    group = np.arange(bins) * levels // bins
    present = kept > 0
    mass = np.bincount(group, weights=kept, minlength=levels)
    filled = np.bincount(group, weights=present, minlength=levels)
    expanded = np.where(present, mass[group] / np.maximum(filled[group], 1), 0.0)
    used = reference > 0
    p = reference[used] / reference.sum()
    q = np.maximum(expanded[used] / max(expanded.sum(), 1.0), 1e-12)
    return float(np.sum(p * np.log(p / q)))


def entropy_range(histogram: Histogram) -> tuple[float, float]:
    """Clip at the threshold of least divergence; data that is never negative gets 255 levels, else 128
    a side."""
    counts, width = histogram.folded()
    levels = 255 if histogram.low >= 0 else 128
    if histogram.width == 0.0 or len(counts) <= levels:
        return minmax_range(histogram)
    stride = max(1, (len(counts) - levels) // ENTROPY_CANDIDATES)
    candidates = list(range(levels, len(counts) + 1, stride))
    best = min(candidates, key=lambda bins: _divergence(counts, bins, levels))
    threshold = best * width
    return max(histogram.low, -threshold), min(histogram.high, threshold)


def mse_range(histogram: Histogram, levels: int = 255) -> tuple[float, float]:
    """Shrink the range (zero kept inside) by the factor with the least expected squared error."""
    low, high = min(histogram.low, 0.0), max(histogram.high, 0.0)
    if histogram.width == 0.0 or low == high:
        return minmax_range(histogram)
    edges = histogram.edges()
    centers, counts = (edges[:-1] + edges[1:]) / 2, histogram.counts
    factors = np.arange(1, MSE_STEPS + 1)[:, None] / MSE_STEPS
    lows, highs = low * factors, high * factors
    scale = (highs - lows) / levels
    clipped = np.clip(centers, lows, highs)
    error = np.where(clipped == centers, scale ** 2 / 12, (centers - clipped) ** 2)
    factor = float(factors[int(np.argmin(error @ counts)), 0])
    return max(histogram.low, low * factor), min(histogram.high, high * factor)


def estimate(histogram: Histogram, method: str, percentile: float = DEFAULT_PERCENTILE) -> tuple[float, float]:
    if method == "percentile":
        return percentile_range(histogram, percentile)
    return {"minmax": minmax_range, "entropy": entropy_range, "mse": mse_range}[method](histogram)


def check_method(method: str, percentile: float = DEFAULT_PERCENTILE) -> None:
    if method not in METHODS:
        raise RangeError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")
    if not 0.0 < percentile <= 100.0:
        raise RangeError(f"calibration percentile {percentile}: give a number in (0, 100], e.g. 99.999")


def collect_ranges(graph: Graph, values: list[Value], stacks: dict[str, np.ndarray], method: str = "minmax",
                   percentile: float = DEFAULT_PERCENTILE,
                   probe: Probe | None = None) -> dict[Value, tuple[float, float]]:
    """(low, high) per value of the float `graph` over the samples in `stacks` ([count, *shape] per input);
    `probe` (reading at least `values`) lets the report reuse the compiled graph."""
    check_method(method, percentile)
    probe = probe or Probe(graph, values)
    histograms = {value: Histogram() for value in values}
    for feeds in samples(stacks):
        results = probe.run(feeds)
        for value in values:
            array = results[value]
            if array.size:
                _record(histograms[value], array, method != "minmax", graph, value)
    return {value: estimate(histograms[value], method, percentile) for value in values}


def _record(histogram: Histogram, array: np.ndarray, binned: bool, graph: Graph, value: Value) -> None:
    """Extremes always; the bins only when the method reads them (minmax does not)."""
    low, high = float(array.min()), float(array.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        node = graph.node(value.node)
        raise RangeError(f"value {graph.value_name(value)!r} of node {node.name!r} ({node.op_type}) reaches "
                         f"{low if not math.isfinite(low) else high} on the calibration data: it cannot be quantized; "
                         f"keep that node float with ignore=[{node.name!r}] (--ignore {node.name})")
    if binned:
        histogram.add(array)
    else:
        histogram.low, histogram.high = min(histogram.low, low), max(histogram.high, high)
