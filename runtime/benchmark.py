"""Benchmarking a loaded model (`kiln bench`): warm-up, timed inferences, latency statistics,
throughput and, for cpu and gpu artifacts, a per-kernel profile mapped back to the graph's nodes.

Inferences run one after another on the calling thread (latency mode), so throughput is
inferences / wall time of the measured loop. numpy and the standard library only.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

PROFILE_HEADER = (f"  {'rank':>4} {'time ms':>9} {'share':>6} {'cumul':>6} {'GFLOP/s':>8}  {'op type':<24} "
                  f"{'kernel':<28} node(s)  (shapes)")


@dataclass(frozen=True)
class KernelTime:
    """One kernel of a profile: its median time over the profiled inferences and its share of all kernels."""

    index: int
    symbol: str
    op_type: str
    nodes: tuple[str, ...]
    shapes: str
    milliseconds: float
    share: float
    flops: int | None = None

    @property
    def gflops_per_second(self) -> float | None:
        return self.flops / self.milliseconds * 1e-6 if self.flops and self.milliseconds > 0 else None


@dataclass
class BenchmarkResult:
    """Seconds of each warm-up and measured inference; per-kernel seconds of each measured one when profiled."""

    warmup: list[float]
    latencies: list[float]
    wall_seconds: float
    kernels: list[dict] = field(default_factory=list)
    kernel_seconds: list[list[float]] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    def latency_ms(self) -> dict:
        times = np.asarray(self.latencies) * 1e3
        return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)),
                "min": float(times.min()), "max": float(times.max()), "mean": float(times.mean())}

    def profile(self) -> list[KernelTime]:
        """Every kernel, slowest first (ties in launch order)."""
        if not self.kernel_seconds:
            return []
        medians = np.median(np.asarray(self.kernel_seconds), axis=0) * 1e3
        total = float(medians.sum()) or 1.0
        order = sorted(range(len(medians)), key=lambda k: (-medians[k], k))
        profile = []
        for k in order:
            entry = self.kernels[k]
            profile.append(KernelTime(k, entry["symbol"], entry["op_type"], tuple(entry["nodes"]), _shapes(entry),
                                      float(medians[k]), float(medians[k]) / total, kernel_flops(entry)))
        return profile

    def to_dict(self, top: int = 0) -> dict:
        """JSON-ready: statistics, and the `top` slowest kernels (0: all) plus per-op-type totals."""
        report = {"warmup_ms": [t * 1e3 for t in self.warmup], "iterations": len(self.latencies),
                  "wall_seconds": self.wall_seconds, "latency_ms": self.latency_ms(),
                  "throughput_per_second": self.throughput}
        if self.kernel_seconds:
            kernels = self.profile()
            report["profile"] = {"kernels": [{"rank": rank, "index": k.index, "symbol": k.symbol, "op_type": k.op_type,
                                              "nodes": list(k.nodes), "shapes": k.shapes, "ms": k.milliseconds,
                                              "share": k.share, "gflops_per_second": k.gflops_per_second}
                                             for rank, k in enumerate(kernels[:top or None], 1)],
                                 "total_kernels": len(kernels), "kernels_ms": sum(k.milliseconds for k in kernels),
                                 "by_op_type": op_type_totals(kernels)}
        return report


def _shapes(kernel: dict) -> str:
    """'1x64x56x56, 64x64x3x3 -> 1x64x56x56': a kernel's operand shapes (absent inputs as -)."""
    def dims(shape):
        return "-" if shape is None else "x".join(map(str, shape)) or "scalar"
    return (", ".join(map(dims, kernel.get("input_shapes", []))) + " -> "
            + ", ".join(map(dims, kernel.get("output_shapes", []))))


def kernel_flops(kernel: dict) -> int | None:
    """Floating-point operations (2 per multiply-add) of a Conv (blocked too), ConvTranspose, Gemm or MatMul (fused
    epilogues included; the int8 kiln::QuantizedConv/MatMul count their integer ones, a packed Conv's padded
    channels included), from its operand shapes; None for other ops."""
    inputs, outputs = kernel.get("input_shapes", []), kernel.get("output_shapes", [])
    if len(inputs) < 2 or None in inputs[:2] or not outputs:
        return None
    x, w, y = inputs[0], inputs[1], outputs[0]
    op_type = kernel["op_type"].removeprefix("kiln::Fused").removeprefix("kiln::Quantized")
    if op_type == "Conv":  # W holds M * C/group * taps weights (in whatever blocking): C/group * taps MACs per output
        return 2 * math.prod(y) * math.prod(w) // max(y[1], 1)
    if op_type == "kiln::BlockedConv":  # Y [N, M / c, OH, OW, c]; W holds M * C * taps weights
        return 2 * math.prod(y) * math.prod(w) // max(y[1] * y[-1], 1)
    if op_type == "ConvTranspose":  # W holds C * M/group * taps: one input element feeds M/group * taps
        return 2 * math.prod(x) * math.prod(w) // max(x[1], 1)
    if op_type == "Gemm":  # K = A's size / M, transposed or not
        return 2 * math.prod(y) * (math.prod(x) // max(y[0], 1))
    if op_type == "MatMul":
        return 2 * math.prod(y) * (x[-1] if x else 1)
    return None


def op_type_totals(kernels: list[KernelTime]) -> list[dict]:
    """Time per op type over all kernels, largest first."""
    totals: dict[str, list] = defaultdict(lambda: [0.0, 0.0, 0])
    for kernel in kernels:
        entry = totals[kernel.op_type]
        entry[0] += kernel.milliseconds
        entry[1] += kernel.share
        entry[2] += 1
    return [{"op_type": op, "ms": ms, "share": share, "kernels": count}
            for op, (ms, share, count) in sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))]


class Progress:
    """How far the measured inferences are: a bar redrawn in place on a terminal, a plain line
    every 10 % otherwise (pipes, logs)."""

    WIDTH = 30

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._tenths = 0
        self._drawn_at = 0.0

    def update(self, fraction: float, count: int, elapsed: float) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if not self.tty:
            if int(fraction * 10) > self._tenths:
                self._tenths = int(fraction * 10)
                self.stream.write(f"bench: {self._tenths * 10}% ({count} inferences, {elapsed:.1f} s)\n")
                self.stream.flush()
            return
        now = time.monotonic()
        if fraction < 1.0 and now - self._drawn_at < 0.1:  # redraw at most 10 times a second
            return
        self._drawn_at = now
        filled = int(fraction * self.WIDTH)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%}  "
                          f"{count} inferences, {elapsed:.1f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def benchmark(model, feeds: dict, *, warmup: int = 1, iterations: int | None = None, seconds: float | None = None,
              profile: bool = False, progress: Progress | None = None) -> BenchmarkResult:
    """Run `warmup` untimed-for-statistics inferences, then measure until `iterations` inferences
    or `seconds` of wall time, whichever comes first (at least one). `profile` times every kernel
    of every measured inference (cpu: two clock reads per kernel; gpu: OpenCL profiling events)."""
    if iterations is None and seconds is None:
        raise ValueError("benchmark() needs iterations or seconds")
    run = (lambda: model.profile(feeds)[1]) if profile else (lambda: model.infer(feeds))
    warmup_times = []
    for _ in range(warmup):
        start = time.perf_counter()
        model.infer(feeds)
        warmup_times.append(time.perf_counter() - start)
    latencies, kernel_seconds = [], []
    begin = time.perf_counter()
    while True:
        start = time.perf_counter()
        kernels = run()
        end = time.perf_counter()
        latencies.append(end - start)
        if profile:
            kernel_seconds.append(kernels)
        fraction = max(len(latencies) / iterations if iterations else 0.0, (end - begin) / seconds if seconds else 0.0)
        if progress:
            progress.update(fraction, len(latencies), end - begin)
        if fraction >= 1.0:
            break
    if progress:
        progress.close()
    return BenchmarkResult(warmup_times, latencies, end - begin, model.manifest.get("kernels", []) if profile else [],
                           kernel_seconds)


def throughput_benchmark(model, feeds: dict, *, warmup: int = 1, iterations: int | None = None,
                         seconds: float | None = None, progress: Progress | None = None) -> BenchmarkResult:
    """Keep one request in flight on every stream of `model` (an async queue of `model.num_streams`
    requests) until `iterations` inferences or `seconds`; each request's latency and the wall time of
    all, so `throughput` counts inferences per second across the streams."""
    if iterations is None and seconds is None:
        raise ValueError("throughput_benchmark() needs iterations or seconds")
    queue = model.create_async_queue(model.num_streams)
    warmup_times = []
    for _ in range(warmup):  # every request once, so every stream has its workspace
        start = time.perf_counter()
        for _ in range(len(queue)):
            queue.start_async(feeds)
        queue.wait_all()
        warmup_times.append(time.perf_counter() - start)
    latencies: list[float] = []
    queue.set_callback(lambda request, started: latencies.append(time.perf_counter() - started))
    begin = time.perf_counter()
    submitted = 0
    while True:
        queue.start_async(feeds, time.perf_counter())
        submitted += 1
        elapsed = time.perf_counter() - begin
        fraction = max(submitted / iterations if iterations else 0.0, elapsed / seconds if seconds else 0.0)
        if progress:
            progress.update(min(fraction, 1.0), submitted, elapsed)
        if fraction >= 1.0:
            break
    queue.wait_all()
    end = time.perf_counter()
    if progress:
        progress.close()
    return BenchmarkResult(warmup_times, latencies, end - begin)


def report_lines(result: BenchmarkResult, about: dict, top: int = 10) -> list[str]:
    """The human-readable report: what ran (`about`: model, target, threads, ready_seconds), the
    statistics, then the `top` slowest kernels (0: all) when profiled."""
    latency = result.latency_ms()
    streams = about.get("streams", 1)
    lines = [f"kiln bench {about['model']}: target {about['target']}, "
             + (f"{streams} streams x " if streams > 1 else "")
             + f"{about['threads']} thread(s), ready in {about['ready_seconds']:.2f} s"]
    if result.warmup:
        lines.append(f"warm-up: {len(result.warmup)} inference(s), first {result.warmup[0] * 1e3:.2f} ms")
    lines += [f"measured: {len(result.latencies)} inferences in {result.wall_seconds:.2f} s",
              "latency: " + ", ".join(f"{name} {value:.2f} ms" for name, value in latency.items()),
              f"throughput: {result.throughput:.2f} inferences/s"]
    return lines + _profile_lines(result, latency["median"], top)


def _profile_lines(result: BenchmarkResult, median_ms: float, top: int) -> list[str]:
    kernels = result.profile()
    if not kernels:
        return []
    total = sum(k.milliseconds for k in kernels)
    shown = kernels[:top or None]
    lines = [f"profile: median per kernel over {len(result.kernel_seconds)} inferences; {len(kernels)} kernels, "
             f"together {total:.2f} ms of the {median_ms:.2f} ms median latency", PROFILE_HEADER]
    cumulative = 0.0
    for rank, kernel in enumerate(shown, 1):
        cumulative += kernel.share
        rate = "" if kernel.gflops_per_second is None else f"{kernel.gflops_per_second:.1f}"
        lines.append(f"  {rank:>4} {kernel.milliseconds:>9.3f} {kernel.share:>6.1%} {cumulative:>6.1%} {rate:>8}  "
                     f"{kernel.op_type:<24} {kernel.symbol:<28} {', '.join(kernel.nodes)}  ({kernel.shapes})")
    if len(shown) < len(kernels):
        rest = kernels[len(shown):]
        lines.append(f"  ({len(rest)} more kernels, {sum(k.milliseconds for k in rest):.3f} ms, "
                     f"{sum(k.share for k in rest):.1%})")
    by_op = op_type_totals(kernels)
    lines.append("by op type: " + ", ".join(f"{e['op_type']} {e['ms']:.2f} ms {e['share']:.1%} ({e['kernels']})"
                                            for e in by_op))
    return lines
