"""Performance hints (OpenVINO's PERFORMANCE_HINT): how many streams a loaded model runs and how
many threads each stream's kernels use.

A stream is one executor (for cpu artifacts: its own copy of the library with its own thread pool),
so requests on different streams run at the same time. "latency" (the default): one stream with
every core, the lowest latency of one request. "throughput": one stream per core group, several
requests at once, the most inferences per second. Explicit `num_streams`/`num_threads` win over
what the hint derives; the counts are exact and exposed as `model.num_streams`/`model.num_threads`.
"""

from __future__ import annotations

import os

HINTS = ("latency", "throughput")


def plan_streams(hint: str | None, num_streams: int | None, num_threads: int | None,
                 cores: int | None = None) -> tuple[int, int]:
    """(streams, threads per stream) for a hint and optional explicit counts."""
    cores = cores or os.cpu_count() or 1
    if hint not in (None, *HINTS):
        raise ValueError(f"performance_hint {hint!r}: use one of {', '.join(HINTS)}")
    for name, value in (("num_streams", num_streams), ("num_threads", num_threads)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be 1 or more, got {value}")
    if hint == "throughput":
        streams = num_streams or (cores if num_threads is None else max(1, cores // num_threads))
    else:
        streams = num_streams or 1
    return streams, num_threads or max(1, cores // streams)
