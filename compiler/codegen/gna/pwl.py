"""The PWL designer: integer segment tables for activation functions (docs/gna-isa.md, section 3.2).

GNA applies activations as piecewise-linear tables over the int32 accumulator. Given the
accumulator's scale `Sx`, the output's scale `Sy` and the real input range, `design` places at
most 128 segments so the largest error stays within a budget (default 1 %), measured through the
executor's own integer PWL semantics (runtime.gna.arithmetic). The error is relative to the
function's largest magnitude over the range (a pure relative error is undefined where f crosses 0).

Piecewise-linear functions (Relu, LeakyRelu, Clip, Abs, identity, Sign) are exact up to rounding:
one segment per linear piece. Smooth ones (Sigmoid, Tanh, Exp, Log, Softsign, Power) are split
greedily: each segment reaches as far right as it can while its best line (the chord moved to
balance its errors) stays inside the tolerance; the tolerance tightens until the integer table
meets the budget. Sigmoid and Tanh use the GNA defaults: 65 segments over (-10, 10) / (-5, 5).
Beyond the designed range, piecewise-linear tables continue their end pieces; smooth ones stay flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.codegen.gna.layers import Pwl
from runtime.gna.arithmetic import INT16, INT32, Exact, PwlTable
from runtime.gna.format import SEGMENT_DTYPE

MAX_SEGMENTS = 128
MAX_SHIFT = 47
DEFAULT_BUDGET = 0.01
_PROBES = 65  # points per candidate segment when fitting
_GRID = 20001  # integer inputs at most when measuring a table's error


@dataclass(frozen=True)
class Function:
    """An activation as the designer sees it. `kinks`: where a piecewise-linear function changes slope
    (None for smooth functions); `domain`: a fixed design range (else the input range is used);
    `positive`: defined for x > 0 only (Log, fractional powers)."""

    name: str
    f: object
    kinks: tuple | None = None
    domain: tuple | None = None
    min_segments: int = 1
    positive: bool = False
    steps: bool = False  # Sign: flat pieces with a jump at 0


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _power(exponent: float):
    if float(exponent).is_integer():
        return lambda x: np.power(x, int(exponent))
    return lambda x: np.power(np.maximum(x, 0.0), exponent)


def function(op: str, **attrs) -> Function:
    """The Function for an ONNX activation op; `attrs`: alpha (LeakyRelu), min/max (Clip), exponent (Power)."""
    if op == "Relu":
        return Function(op, lambda x: np.maximum(x, 0.0), kinks=(0.0,))
    if op == "LeakyRelu":
        alpha = float(attrs.get("alpha", 0.01))
        return Function(op, lambda x: np.where(x < 0, alpha * x, x), kinks=(0.0,))
    if op == "Clip":
        low, high = float(attrs.get("min", -np.inf)), float(attrs.get("max", np.inf))
        return Function(op, lambda x: np.clip(x, low, high), kinks=tuple(k for k in (low, high) if np.isfinite(k)))
    if op == "Abs":
        return Function(op, np.abs, kinks=(0.0,))
    if op == "Identity":
        return Function(op, lambda x: np.asarray(x, np.float64), kinks=())
    if op == "Sign":
        return Function(op, np.sign, kinks=(0.0,), steps=True)
    if op == "Sigmoid":
        return Function(op, _sigmoid, domain=(-10.0, 10.0), min_segments=65)
    if op == "Tanh":
        return Function(op, np.tanh, domain=(-5.0, 5.0), min_segments=65)
    if op == "Exp":
        return Function(op, np.exp)
    if op == "Log":
        return Function(op, np.log, positive=True)
    if op == "Softsign":
        return Function(op, lambda x: x / (1.0 + np.abs(x)))
    if op == "Pow":
        exponent = float(attrs["exponent"])
        return Function(op, _power(exponent), positive=not exponent.is_integer())
    raise ValueError(f"no PWL design for {op!r}; the designer knows {', '.join(ACTIVATIONS)}")


ACTIVATIONS = ("Relu", "LeakyRelu", "Clip", "Abs", "Identity", "Sign", "Sigmoid", "Tanh", "Exp", "Log", "Softsign",
               "Pow")


@dataclass(frozen=True)
class Design:
    """A designed table and what it achieves: `error` is the largest |pwl - f| over the range, relative
    to max |f| there, measured on the integer table at up to 20001 inputs and each breakpoint (so right
    to within one output step)."""

    function: str
    pwl: Pwl
    error: float
    budget: float
    range: tuple
    in_scale: float
    out_scale: float

    @property
    def segments(self) -> int:
        return len(self.pwl.x_base)

    def as_dict(self) -> dict:
        return {"function": self.function, "segments": self.segments, "max_error": self.error, "budget": self.budget,
                "range": list(self.range), "in_scale": self.in_scale, "out_scale": self.out_scale}


def design_range(fn: Function, low: float, high: float) -> tuple[float, float]:
    """The real interval the table is designed over: the function's default or the input range
    (widened when empty; for positive-only functions, its positive part)."""
    if fn.domain is not None:
        return min(fn.domain[0], low), max(fn.domain[1], high)
    if fn.positive:
        high = max(high, 1e-3)
        low = max(low, high * 1e-3)
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5
    return float(low), float(high)


def _line(fn: Function, a: float, b: float) -> tuple[float, float, float]:
    """(y at a, slope, max |error|) of the best line over [a, b] through the chord with balanced errors."""
    xs = np.linspace(a, b, _PROBES)
    ys = fn.f(xs)
    slope = (ys[-1] - ys[0]) / (b - a)
    residual = ys - (ys[0] + slope * (xs - a))
    offset = 0.5 * (residual.max() + residual.min())
    return ys[0] + offset, slope, 0.5 * (residual.max() - residual.min())


def _smooth_pieces(fn: Function, low: float, high: float, tolerance: float) -> list[tuple]:
    """Greedy pieces (start, y at start, slope) covering [low, high], each within `tolerance`."""
    pieces, a = [], low
    while a < high and len(pieces) <= MAX_SEGMENTS:
        if _line(fn, a, high)[2] <= tolerance:
            b = high
        else:
            good, bad = a, high
            for _ in range(40):
                middle = 0.5 * (good + bad)
                good, bad = (middle, bad) if _line(fn, a, middle)[2] <= tolerance else (good, middle)
            b = max(good, a + (high - low) * 1e-6)
        y, slope, _ = _line(fn, a, b)
        pieces.append((a, y, slope))
        a = b
    return pieces


def _linear_pieces(fn: Function, low: float, high: float, in_scale: float) -> list[tuple]:
    """One piece per linear part of a piecewise-linear function (Sign: flat parts, 0 exactly at 0)."""
    if fn.steps:
        return [(-np.inf, -1.0, 0.0), (0.0, 0.0, 0.0), (1.0 / in_scale, 1.0, 0.0)]
    starts = [low] + [k for k in fn.kinks if low < k < high]
    pieces = []
    for a, b in zip(starts, starts[1:] + [max(high, starts[-1] + 1.0)]):
        ya, yb = fn.f(np.array([a, b], np.float64))
        pieces.append((a, float(ya), float((yb - ya) / (b - a))))
    return pieces


def quantize_pieces(pieces: list[tuple], in_scale: float, out_scale: float, flat_tails: bool) -> Pwl:
    """Integer segments for real pieces (start, y at start, slope): x in units of `in_scale`, y of `out_scale`.
    With `flat_tails`, values below the first piece keep its start value (segment 0 reaches -inf)."""
    rows = {}
    for index, (start, y, slope) in enumerate(pieces):
        if index == 0 and flat_tails:
            rows[INT32[0]] = (int(np.clip(np.rint(y * out_scale), *INT16)), 0, 0)
        if np.isfinite(start):
            x_base = int(np.clip(np.rint(start * in_scale), *INT32))
            y = y + slope * (x_base / in_scale - start)  # the line's value at the integer start
        else:
            x_base = INT32[0]
        rate = slope * out_scale / in_scale  # output integers per input integer
        shift = 0 if rate == 0 else int(np.clip(np.floor(np.log2(INT16[1] / abs(rate))), 0, MAX_SHIFT))
        step = int(np.clip(np.rint(rate * 2.0 ** shift), -INT16[1], INT16[1]))
        # A later piece starting at the same integer wins.
        rows[x_base] = (int(np.clip(np.rint(y * out_scale), *INT16)), step, shift if step else 0)
    x_bases = sorted(rows)
    return Pwl(tuple(x_bases), *(tuple(rows[x][k] for x in x_bases) for k in range(3)))


def table_error(fn: Function, pwl: Pwl, in_scale: float, out_scale: float, low: float, high: float) -> float:
    """max |pwl(x) - f(x)| over integer inputs in [low, high] · in_scale, relative to max |f| there."""
    first, last = int(np.ceil(low * in_scale)), int(np.floor(high * in_scale))
    xs = np.unique(np.concatenate([np.linspace(first, last, _GRID).round(), np.asarray(pwl.x_base, np.float64),
                                   np.asarray(pwl.x_base, np.float64) - 1]))
    xs = xs[(xs >= first) & (xs <= last)].astype(np.int64)
    table = np.zeros(len(pwl.x_base), SEGMENT_DTYPE)
    for name in ("x_base", "y_base", "slope", "shift"):
        table[name] = getattr(pwl, name)
    ys = Exact().activate(xs, PwlTable(table)) / out_scale
    exact = fn.f(xs / in_scale)
    return float(np.max(np.abs(ys - exact)) / max(np.max(np.abs(exact)), 1e-12))


def design(fn: Function, in_scale: float, out_scale: float, low: float, high: float,
           budget: float = DEFAULT_BUDGET) -> Design:
    """A table for `fn` over the real input range [low, high]; see the module docstring."""
    low, high = design_range(fn, low, high)
    if fn.kinks is not None:
        pwl = quantize_pieces(_linear_pieces(fn, low, high, in_scale), in_scale, out_scale, flat_tails=False)
        return Design(fn.name, pwl, table_error(fn, pwl, in_scale, out_scale, low, high), budget, (low, high),
                      in_scale, out_scale)
    peak = float(np.max(np.abs(fn.f(np.linspace(low, high, 4097)))))
    tolerance, best = 0.9 * budget * max(peak, 1e-12), None
    for _ in range(24):
        pieces = _smooth_pieces(fn, low, high, tolerance)
        if len(pieces) + 1 > MAX_SEGMENTS:
            break
        y_end = float(fn.f(np.array([high]))[0])
        pwl = quantize_pieces(pieces + [(high, y_end, 0.0)], in_scale, out_scale, flat_tails=True)
        error = table_error(fn, pwl, in_scale, out_scale, low, high)
        if best is None or error < best[1]:
            best = (pwl, error)
        if error <= budget and len(pwl.x_base) >= fn.min_segments:
            break
        tolerance *= 0.8
    pwl, error = best
    return Design(fn.name, pwl, error, budget, (low, high), in_scale, out_scale)
