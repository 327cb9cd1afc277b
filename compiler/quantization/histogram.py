"""A histogram of one tensor's values that accumulates across samples in bounded memory.

Bins have a power-of-two width and edges at integer multiples of it, so zero is always an edge
and growing never splits a bin: when a sample falls outside the bins held, missing bins are
added, and while that would exceed `max_bins` the width doubles by merging aligned pairs.
Counts are therefore exact for the final bins whatever the order of samples, and at least
`max_bins / 2` bins cover the values seen. The exact minimum and maximum are kept beside.
"""

from __future__ import annotations

import math

import numpy as np

MAX_BINS = 4096


class Histogram:
    def __init__(self, max_bins: int = MAX_BINS):
        self.max_bins = max_bins
        self.width = 0.0  # 0 until a sample with two distinct values (or a non-zero value) arrives
        self.first = 0  # index k of the first bin [k * width, (k + 1) * width)
        self.counts = np.zeros(0, np.int64)
        self.pending = 0  # values counted while all were equal (no width known yet)
        self.low, self.high = math.inf, -math.inf

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.pending

    def edges(self) -> np.ndarray:
        """len(counts) + 1 bin edges."""
        return (self.first + np.arange(len(self.counts) + 1)) * self.width

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64).ravel()
        if not values.size:
            return
        low, high = float(values.min()), float(values.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"values reach {low if not math.isfinite(low) else high}")
        previous = self.low
        self.low, self.high = min(self.low, low), max(self.high, high)
        if self.width == 0.0:
            if self.low == self.high:  # nothing to size bins by yet: remember how many equal values came
                self.pending += values.size
                return
            self._start(previous)
        start, stop = self._index(low), self._index(high) + 1
        self._cover(start, stop)
        index = np.floor(values / self.width).astype(np.int64) - self.first
        self.counts += np.bincount(np.clip(index, 0, len(self.counts) - 1), minlength=len(self.counts))

    def _index(self, value: float) -> int:
        return math.floor(value / self.width)

    def _start(self, previous: float) -> None:
        """Pick the width from the first spread of values; the equal values seen before (`previous`) get a bin."""
        self.width = 2.0 ** math.ceil(math.log2((self.high - self.low) / self.max_bins))
        self.first = self._index(self.low)
        self.counts = np.zeros(1, np.int64)
        if self.pending:
            self._cover(self._index(previous), self._index(previous) + 1)
            self.counts[self._index(previous) - self.first] += self.pending
            self.pending = 0

    def folded(self) -> tuple[np.ndarray, float]:
        """(counts, width) of |values| over bins [i * width, (i + 1) * width) from 0, at most `max_bins` of them."""
        if self.width == 0.0:
            return np.array([self.pending], np.int64), max(abs(self.low), abs(self.high))
        histogram = Histogram(self.max_bins)
        histogram.width, histogram.first, histogram.counts = self.width, self.first, self.counts.copy()
        while max(-histogram.first, histogram.first + len(histogram.counts)) > self.max_bins:
            histogram._double()
        last = max(-histogram.first, histogram.first + len(histogram.counts))
        index = histogram.first + np.arange(len(histogram.counts))
        folded = np.zeros(last, np.int64)
        np.add.at(folded, np.where(index >= 0, index, -index - 1), histogram.counts)
        return folded, histogram.width

    def _cover(self, start: int, stop: int) -> None:
        """Grow the bins to hold indices [start, stop) at the current width, doubling it as needed."""
        while True:
            start, stop = min(start, self.first), max(stop, self.first + len(self.counts))
            if stop - start <= self.max_bins:
                break
            self._double()
            start, stop = start // 2, -(-stop // 2)
        counts = np.zeros(stop - start, np.int64)
        counts[self.first - start:self.first - start + len(self.counts)] = self.counts
        self.first, self.counts = start, counts

    def _double(self) -> None:
        """Merge aligned bin pairs: bin k at width w lies in bin floor(k / 2) at width 2w."""
        if self.first % 2:
            self.first -= 1
            self.counts = np.concatenate([[0], self.counts])
        if len(self.counts) % 2:
            self.counts = np.concatenate([self.counts, [0]])
        self.counts = self.counts.reshape(-1, 2).sum(axis=1)
        self.first //= 2
        self.width *= 2
