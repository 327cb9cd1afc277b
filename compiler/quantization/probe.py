"""Run a graph over calibration samples and read chosen values: natively when the cpu target can.

Calibration reads ~100 intermediate values per sample. Measured on light_resnet50 (2 shared
cores): the ref interpreter takes 1.7-2.8 s a sample, so 100 samples take minutes; compiling the
graph for the cpu target with those values as extra outputs takes ~10 s once and then 0.14 s a
sample (24 s for 100). So the probe compiles for cpu, and falls back to the interpreter only for
graphs the cpu target cannot compile (a slow but working path). Each value is read one sample at a
time, so memory holds one sample's values, whatever the number of samples.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np

from compiler.calibration_data import sample_count
from compiler.ir.graph import Graph, Value

log = logging.getLogger("kiln.quantization")


def samples(stacks: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """One feed dict per sample of [count, *shape] stacks."""
    for index in range(sample_count(stacks)):
        yield {name: stack[index] for name, stack in stacks.items()}


class Probe:
    """`run(feeds)` -> {value: array} for `values`, computed by `graph` from `feeds`."""

    def __init__(self, graph: Graph, values: list[Value]):
        import runtime
        from compiler.driver import UnsupportedByTargetError, compile
        from compiler.ops.interpreter import Interpreter

        self.values = list(values)
        self._fed = {value: value.node for value in self.values if value.node in graph.inputs}
        computed = list(dict.fromkeys(v for v in self.values if v not in self._fed))
        self._names = {value: f"probe{i}" for i, value in enumerate(computed)}
        probe = graph.copy()
        probe.outputs = [(self._names[value], value) for value in computed]
        try:
            self._infer = runtime.load(compile(probe, "cpu")).infer
        except UnsupportedByTargetError as error:
            log.info("probing %s with the ref interpreter: %s", graph.name, error)
            interpreter = Interpreter(probe)
            self._infer = lambda feeds: dict(zip((name for name, _ in probe.outputs), interpreter.run(feeds)))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[Value, np.ndarray]:
        results = self._infer(feeds) if self._names else {}
        return {value: np.asarray(feeds[self._fed[value]] if value in self._fed else results[self._names[value]])
                for value in self.values}
