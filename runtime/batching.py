"""Automatic batching: concurrent one-sample requests gathered into one call of a batched artifact.

`runtime.load(path, auto_batch=True)` on an artifact compiled for batch B (every input and output
has B along axis 0) makes the model take one sample per call (axis 0 of size 1). A batching thread
takes the calls that arrive within `batch_timeout` seconds of the first, up to B, stacks them
(zero-padding the rest of the batch), runs the artifact once and hands each caller its slice:
throughput of the batched kernels for callers that send one sample each (OpenVINO's automatic
batching). A lone call waits at most the timeout.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import numpy as np


def batch_size(inputs: list, outputs: list) -> int | None:
    """B when every input and output is a tensor with the same static axis-0 size B >= 2, else None."""
    sizes = {info.shape[0] if info.kind == "tensor" and info.shape and isinstance(info.shape[0], int) else None
             for info in [*inputs, *outputs]}
    size = sizes.pop() if len(sizes) == 1 else None
    return size if size is not None and size >= 2 else None


class Batcher:
    """Runs `run(values)` on stacked groups of one-sample calls; `calls` counts the batched runs."""

    def __init__(self, run, batch: int, timeout: float):
        self._run, self.batch, self.timeout = run, batch, timeout
        self._pending: list[tuple[list, Future]] = []
        self._condition = threading.Condition()
        self.calls = 0
        threading.Thread(target=self._loop, name="kiln-batcher", daemon=True).start()

    def submit(self, values: list) -> list:
        future: Future = Future()
        with self._condition:
            self._pending.append((values, future))
            self._condition.notify_all()
        return future.result()

    def _take(self) -> list[tuple[list, Future]]:
        with self._condition:
            while not self._pending:
                self._condition.wait()
            deadline = time.monotonic() + self.timeout
            while len(self._pending) < self.batch and (left := deadline - time.monotonic()) > 0:
                self._condition.wait(left)
            group, self._pending = self._pending[:self.batch], self._pending[self.batch:]
            return group

    def _loop(self) -> None:
        while True:
            group = self._take()
            try:
                stacked = []
                for column in zip(*(values for values, _ in group)):
                    batch = np.zeros((self.batch, *column[0].shape[1:]), dtype=column[0].dtype)
                    batch[:len(column)] = np.concatenate(column)
                    stacked.append(batch)
                results = self._run(stacked)
                self.calls += 1
                for index, (_, future) in enumerate(group):
                    future.set_result([result[index:index + 1] for result in results])
            except Exception as error:  # the callers see the failure, the batching thread lives on
                for _, future in group:
                    future.set_exception(error)
