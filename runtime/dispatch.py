"""Runs "dispatch" artifacts (compiler/dispatch.py): the part compiled for the input shapes given.

Parts are loaded when first used, so an artifact with many shape sets costs only what runs.
"""

from __future__ import annotations

import os
import threading

from runtime.signature import InputError, format_bounds, within


def _fits(given: list, compiled: list, bounds: list | None) -> bool:
    """Whether a part compiled for `compiled` (a dynamic batch: a name with `bounds`) runs shape `given`."""
    if len(given) != len(compiled):
        return False
    bounds = bounds or [None] * len(compiled)
    return all(size == dim if isinstance(dim, int) else limits and within(limits, size)
               for size, dim, limits in zip(given, compiled, bounds))


def _describe(shape: list, bounds: list | None) -> str:
    bounds = bounds or [None] * len(shape)
    return "x".join(format_bounds(limits) if limits else str(dim) for dim, limits in zip(shape, bounds))


class DispatchExecutor:
    def __init__(self, files, **options):
        from runtime.model import executor_for  # model.py imports the executors by name; no cycle at import

        self._files, self._options, self._executor_for = files, options, executor_for
        self.parts = files.manifest["parts"]
        self._names = [entry["name"] for entry in files.manifest["inputs"]]
        self._loaded: dict[int, object] = {}
        self._lock = threading.Lock()
        self.threads = options.get("cpu", {}).get("num_threads") or os.cpu_count() or 1

    def _part_for(self, values: list) -> int:
        """The first part compiled for exactly these shapes, else the first whose dynamic dims take them (a
        generic part, compiler/dynamic_extent.py, catching the shapes no specialised part has)."""
        shapes = {name: list(getattr(value, "shape", ())) for name, value in zip(self._names, values)}
        fitting = [index for index, part in enumerate(self.parts)
                   if all(_fits(shapes[name], shape, part.get("input_bounds", {}).get(name))
                          for name, shape in part["input_shapes"].items())]
        exact = [index for index in fitting if not self.parts[index].get("input_bounds")]
        if fitting:
            return (exact or fitting)[0]
        compiled = "; ".join(", ".join(f"{n}={_describe(s, p.get('input_bounds', {}).get(n))}"
                                       for n, s in p["input_shapes"].items()) for p in self.parts)
        given = ", ".join(f"{n}={'x'.join(map(str, s))}" for n, s in shapes.items())
        raise InputError(f"no part of this artifact was compiled for input shapes {given}; it holds: {compiled}. "
                         "Compile with --specialize for these shapes too")

    def _executor(self, index: int):
        with self._lock:
            if index not in self._loaded:
                part = self._files.part(self.parts[index]["prefix"])
                self._loaded[index] = self._executor_for(part, self._options)
            return self._loaded[index]

    def run(self, inputs: list) -> list:
        return self._executor(self._part_for(inputs)).run(inputs)

    def close(self) -> None:
        for executor in self._loaded.values():
            close = getattr(executor, "close", None)
            if close is not None:
                close()
