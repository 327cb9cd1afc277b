"""The growing histogram and the range estimators, against hand-computed histograms and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compiler.quantization.histogram import Histogram
from compiler.quantization.ranges import (_divergence, entropy_range, estimate, minmax_range, mse_range,
                                          percentile_range)


def test_histogram_grows_by_merging_aligned_pairs():
    histogram = Histogram(max_bins=4)
    histogram.add(np.array([0.0, 1.0, 2.0, 3.0]))  # span 3 / 4 bins -> width 1: [0,1) [1,2) [2,3) [3,4)
    assert (histogram.width, histogram.first, list(histogram.counts)) == (1.0, 0, [1, 1, 1, 1])
    histogram.add(np.array([7.5]))  # needs 8 bins of width 1: width 2, bins [0,2) .. [6,8)
    assert (histogram.width, histogram.first, list(histogram.counts)) == (2.0, 0, [2, 2, 0, 1])
    histogram.add(np.array([-1.0]))  # needs [-2, 8) = 5 bins of width 2: width 4, bins [-4,0) [0,4) [4,8)
    assert (histogram.width, histogram.first, list(histogram.counts)) == (4.0, -1, [1, 4, 1])
    assert list(histogram.edges()) == [-4.0, 0.0, 4.0, 8.0]
    assert (histogram.low, histogram.high, histogram.total) == (-1.0, 7.5, 6)


def test_histogram_counts_equal_numpy_over_its_final_edges():
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal(1000) * scale + shift for scale, shift in ((0.01, 0), (1, 3), (5, -2), (0.5, 40))]
    histogram = Histogram(max_bins=256)
    for chunk in chunks:
        histogram.add(chunk)
    data = np.concatenate(chunks)
    assert len(histogram.counts) <= 256 and histogram.total == data.size
    expected, _ = np.histogram(data, bins=histogram.edges())
    assert np.array_equal(histogram.counts, expected)
    assert (histogram.low, histogram.high) == (data.min(), data.max())


def test_equal_values_wait_for_a_width():
    histogram = Histogram(max_bins=8)
    histogram.add(np.zeros(5))
    histogram.add(np.zeros(3))
    assert histogram.width == 0.0 and histogram.total == 8
    assert minmax_range(histogram) == percentile_range(histogram) == entropy_range(histogram) == (0.0, 0.0)
    histogram.add(np.array([3.9]))  # width 3.9 / 8 bins -> 0.5: the 8 zeros land in [0, 0.5)
    assert histogram.width == 0.5 and histogram.counts[0] == 8 and histogram.counts[-1] == 1


def test_folded_histogram_counts_magnitudes():
    histogram = Histogram(max_bins=8)
    histogram.add(np.array([-3.5, -0.5, 0.5, 1.5, 3.5]))  # width 1, bins [-4,-3) .. [3,4)
    counts, width = histogram.folded()
    assert width == 1.0 and list(counts) == [2, 1, 0, 2]  # |x| in [0,1): 2, [1,2): 1, [3,4): 2


def test_percentile_uses_bin_edges():
    histogram = Histogram(max_bins=128)
    histogram.add(np.arange(100) + 0.5)  # width 1: one value per bin [i, i + 1)
    # 90 % kept, 5 % cut a side: the 95 % point lies in bin [94, 95) -> its upper edge 95; the 5 % point
    # in bin [4, 5) -> its lower edge 4
    assert percentile_range(histogram, 90.0) == (4.0, 95.0)
    assert percentile_range(histogram, 100.0) == (0.5, 99.5)  # never beyond the values seen


def test_divergence_by_hand():
    # groups of 2 bins; the empty bin stays empty in Q, so Q equals P: no divergence
    assert _divergence(np.array([4, 0, 2, 2]), bins=4, levels=2) == pytest.approx(0.0)
    # clip at 4 of 5 bins: P = [3, 1, 2, 2 + 2] / 10; Q spreads [3 + 1, 2 + 2] over 2 bins each: [2, 2, 2, 2] / 8
    p, q = np.array([3, 1, 2, 4]) / 10, np.full(4, 0.25)
    assert _divergence(np.array([3, 1, 2, 2, 2]), bins=4, levels=2) == pytest.approx(float(np.sum(p * np.log(p / q))))


def test_entropy_clips_a_lone_outlier_and_keeps_zero_low_bound():
    rng = np.random.default_rng(1)
    data = np.maximum(rng.standard_normal(200_000), 0.0)
    data[0] = 100.0
    histogram = Histogram()
    histogram.add(data)
    low, high = entropy_range(histogram)
    assert low == 0.0 and 3.0 < high < 12.0


def _true_mse(data: np.ndarray, low: float, high: float) -> float:
    """Mean squared error of uint8 fake quantization over [low, high] (the QuantizeLinear formula)."""
    scale = (high - low) / 255
    zero_point = np.clip(np.rint(-low / scale), 0, 255)
    quantized = np.clip(np.rint(data / scale) + zero_point, 0, 255)
    return float(np.mean(((quantized - zero_point) * scale - data) ** 2))


def test_mse_range_is_near_the_brute_force_best():
    rng = np.random.default_rng(2)
    data = np.concatenate([rng.standard_normal(100_000), [60.0, -30.0]])
    histogram = Histogram()
    histogram.add(data)
    chosen = _true_mse(data, *mse_range(histogram))
    best = min(_true_mse(data, data.min() * a, data.max() * a) for a in np.arange(1, 101) / 100)
    assert chosen <= best * 1.05


def test_estimate_dispatches_and_checks_nothing_else():
    histogram = Histogram()
    histogram.add(np.linspace(-1, 1, 1001))
    assert estimate(histogram, "minmax") == (-1.0, 1.0)
    low, high = estimate(histogram, "percentile", 90.0)
    assert math.isclose(low, -0.9, abs_tol=2 * histogram.width) and math.isclose(high, 0.9, abs_tol=2 * histogram.width)
