"""Compile progress: which pass or kernel the compiler is on, and where the time went.

`CompileProgress` is a pass instrument; the driver also makes it the current progress while the
target emits, so code generation reports its stages (`with current().stage("llvm")`) and each
kernel (`current().kernel(k, total, name)`) without threading an argument through every call.
On a terminal it redraws one line; otherwise (pipes, CI logs) it writes a plain line per pass and
per stage, and every tenth of the kernels. At the end it summarises the slowest passes and the
stages. Outside a compile with progress, `current()` is a no-op.
"""

from __future__ import annotations

import contextvars
import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

from compiler.passes.manager import Instrument


class _Silent:
    """Progress that shows nothing: the default."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield

    def kernel(self, index: int, total: int, name: str) -> None:
        pass


_CURRENT: contextvars.ContextVar = contextvars.ContextVar("kiln_compile_progress", default=_Silent())


def current():
    """The progress of the compile running in this context (a no-op outside one)."""
    return _CURRENT.get()


class CompileProgress(Instrument):
    """Shows a compile's passes, stages and kernels on `stream` (stderr by default)."""

    def __init__(self, total_passes: int, stream: TextIO | None = None, slowest: int = 3):
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.total_passes, self.slowest = total_passes, slowest
        self.pass_times: list[tuple[str, float]] = []
        self.stage_times: list[tuple[str, float]] = []
        self.started = time.perf_counter()
        self._stage = ""

    @contextmanager
    def active(self) -> Iterator["CompileProgress"]:
        """Make this the current progress (for code generation) inside the block."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def _show(self, text: str, final: bool = False) -> None:
        if self.terminal:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def before_pass(self, name, graph):
        if self.terminal:
            self._show(f"kiln: pass {len(self.pass_times) + 1}/{self.total_passes} {name} ({len(graph)} nodes)")

    def after_pass(self, name, graph, seconds):
        self.pass_times.append((name, seconds))
        if not self.terminal:
            self._show(f"kiln: pass {len(self.pass_times)}/{self.total_passes} {name}: {seconds * 1e3:.1f} ms, "
                       f"{len(graph)} nodes")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._stage = name
        self._show(f"kiln: {name}...")
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.stage_times.append((name, seconds))
        if not self.terminal:
            self._show(f"kiln: {name}: {seconds:.2f} s")

    def kernel(self, index: int, total: int, name: str) -> None:
        done = index + 1
        if self.terminal:
            width = 30
            filled = width * done // max(total, 1)
            self._show(f"kiln: {self._stage} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name}")
        elif done == total or done % max(1, total // 10) == 0:
            self._show(f"kiln: {self._stage}: kernel {done}/{total} ({name})")

    def summary(self) -> str:
        total = time.perf_counter() - self.started
        passes = sum(seconds for _, seconds in self.pass_times)
        slow = sorted(self.pass_times, key=lambda item: -item[1])[:self.slowest]
        parts = [f"compiled in {total:.2f} s: passes {passes:.2f} s (slowest: "
                 + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in slow) + ")"]
        parts += [f"{name} {seconds:.2f} s" for name, seconds in self.stage_times]
        return "; ".join(parts)

    def close(self) -> None:
        self._show("kiln: " + self.summary(), final=True)
