"""Infer requests and the async queue (OpenVINO's InferRequest / AsyncInferQueue, in Python).

A request runs on a worker thread on one of the model's streams (runtime/hints.py); each request
owns its place in the executor (its own workspace), so several requests can be in flight at once,
and requests on different streams compute at the same time.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Mapping


class InferRequest:
    """One reusable request: `infer(feeds)` runs now; `start_async(feeds)` then `wait()`. A request of
    a stateful model owns its state variables: `query_state()`, `reset_state()`."""

    def __init__(self, model, pool: ThreadPoolExecutor, stream: int = 0):
        self._model = model
        self._pool = pool
        self.stream = stream
        self._states = model._state.new_states()
        self._future: Future | None = None
        self.results: dict | None = None

    def infer(self, feeds: Mapping[str, object]) -> dict:
        self.results = self._model._run(feeds, self._states, self.stream)
        return self.results

    def query_state(self) -> list:
        """This request's state variables (runtime.state.VariableState): name, state, set_state, reset."""
        return list(self._states.values())

    def reset_state(self) -> None:
        for variable in self._states.values():
            variable.reset()

    def start_async(self, feeds: Mapping[str, object], callback: Callable[["InferRequest"], None] | None = None):
        """Start inference on a worker thread; `callback(request)` runs when it is done."""
        if self._future is not None and not self._future.done():
            raise RuntimeError("this request is still running: wait() for it before starting it again")

        def work():
            self.infer(feeds)
            if callback is not None:
                callback(self)
            return self.results

        self._future = self._pool.submit(work)

    def wait(self) -> dict:
        """Block until the started inference finishes; its error, if any, is raised here."""
        if self._future is None:
            raise RuntimeError("wait() called before start_async()")
        return self._future.result()


class AsyncInferQueue:
    """A pool of `jobs` requests fed in order: `start_async(feeds, userdata)`, callbacks per request."""

    def __init__(self, model, jobs: int = 2):
        if jobs < 1:
            raise ValueError(f"an AsyncInferQueue needs at least one job, got {jobs}")
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kiln-infer")
        self._requests = [InferRequest(model, self._pool, model.next_stream()) for _ in range(jobs)]
        self._idle = list(range(jobs))
        self._condition = threading.Condition()
        self._callback: Callable[[InferRequest, object], None] | None = None
        self._errors: list[BaseException] = []

    def __len__(self) -> int:
        return len(self._requests)

    def set_callback(self, callback: Callable[[InferRequest, object], None]) -> None:
        self._callback = callback

    def start_async(self, feeds: Mapping[str, object], userdata=None) -> None:
        """Run `feeds` on the next idle request (blocking while all are busy)."""
        with self._condition:
            while not self._idle:
                self._condition.wait()
            index = self._idle.pop(0)
        request = self._requests[index]

        def done(finished: InferRequest):
            try:
                if self._callback is not None:
                    self._callback(finished, userdata)
            finally:
                with self._condition:
                    self._idle.append(index)
                    self._condition.notify_all()

        def run():
            try:
                request.infer(feeds)
            except BaseException as error:
                self._errors.append(error)
                with self._condition:
                    self._idle.append(index)
                    self._condition.notify_all()
                raise
            done(request)

        request._future = self._pool.submit(run)

    def wait_all(self) -> None:
        """Block until every started request is done; re-raise the first error, if any."""
        with self._condition:
            while len(self._idle) < len(self._requests):
                self._condition.wait()
        if self._errors:
            error, self._errors = self._errors[0], []
            raise error
