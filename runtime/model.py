"""A loaded artifact: its signature and infer()."""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Mapping

from runtime.artifact_reader import ArtifactError, read_artifact
from runtime.batching import Batcher, batch_size
from runtime.hints import plan_streams
from runtime.requests import AsyncInferQueue, InferRequest
from runtime.signature import TensorInfo, validate_inputs
from runtime.state import StateLayout, VariableState

# target -> module:class of the executor that runs its artifacts. The ref target's executor
# is the compiler's own interpreter (the oracle), so ref artifacts need the compiler installed.
EXECUTORS = {"ref": "compiler.targets.ref_executor:RefExecutor", "cpu": "runtime.cpu:CpuExecutor",
             "gpu": "runtime.gpu:GpuExecutor", "gna": "runtime.gna.model:GnaExecutor",
             "dispatch": "runtime.dispatch:DispatchExecutor", "hetero": "runtime.hetero:HeteroExecutor",
             "auto": "runtime.auto:AutoExecutor", "multi": "runtime.auto:MultiExecutor",
             "host": "runtime.host:HostExecutor"}
COMPOSITE = frozenset({"dispatch", "hetero", "auto", "multi"})  # artifacts of parts: their executors get every
# target's load options, to pass on to the parts


def executor_for(files, options: dict):
    """The executor of the artifact `files`, given the load options of every target (`options[target]`)."""
    target = files.manifest["target"]
    if target not in EXECUTORS:
        raise ArtifactError(f"this runtime cannot run {target!r} artifacts; it runs: {', '.join(sorted(EXECUTORS))}")
    module_name, class_name = EXECUTORS[target].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ArtifactError(f"running {target!r} artifacts needs {module_name} ({error}); install kiln fully") from None
    own = options if target in COMPOSITE else options.get(target, {})
    return getattr(module, class_name)(files, **own)


class _Closed:
    """The executor of a closed model: every use says so."""

    def __getattr__(self, name):
        raise ArtifactError("this model was closed; load the artifact again to run it")


class CompiledModel:
    """Run a compiled model: `infer({name: array}) -> {name: array}`, inputs checked first.

    `num_threads` (cpu artifacts): exactly this many threads per inference; default all cores.
    `verify_all`: also check the sha256 of large files (weights), not only their sizes.
    `device` (gpu artifacts): the OpenCL device, by index or name (runtime/gpu.py: select_device).
    `performance_hint` "latency" (one stream, every core) or "throughput" (several streams running
    requests at once), and `num_streams`, set `num_streams` x `num_threads` (runtime/hints.py).
    `auto_batch`: an artifact compiled for batch B takes one sample per call, and concurrent calls
    arriving within `batch_timeout` seconds run as one batch (runtime/batching.py).
    """

    def __init__(self, source, num_threads: int | None = None, verify_all: bool = False, device=None,
                 performance_hint: str | None = None, num_streams: int | None = None, auto_batch: bool = False,
                 batch_timeout: float = 0.002):
        files = read_artifact(source, verify_all)
        self.manifest = files.manifest
        self.target = self.manifest["target"]
        self._state = StateLayout(files, [TensorInfo.from_manifest(entry) for entry in self.manifest["inputs"]],
                                  [TensorInfo.from_manifest(entry) for entry in self.manifest["outputs"]])
        self.inputs, self.outputs = self._state.inputs, self._state.outputs  # state variables are not among them
        self._default_states = self._state.new_states()
        self.frozen_inputs = tuple(self.manifest.get("frozen_inputs", ()))
        self.num_streams, threads = plan_streams(performance_hint, num_streams,
                                                 num_threads if self.target == "cpu" or self.target in COMPOSITE
                                                 else None)
        self._executors = [executor_for(files, {"cpu": {"num_threads": threads}, "gpu": {"device": device}})
                           for _ in range(self.num_streams)]
        self._executor = self._executors[0]
        self.num_threads = getattr(self._executor, "threads", 1)
        self._pool: ThreadPoolExecutor | None = None
        self._requests_made = 0
        self._batcher = self._batching(batch_timeout) if auto_batch else None

    def infer(self, feeds: Mapping[str, object]) -> dict:
        """Outputs by name. A stateful model's state here is the model's own default request's: use
        create_infer_request() for separate (or concurrent) state."""
        return self._run(feeds, self._default_states)

    def _batching(self, timeout: float) -> Batcher:
        """The batcher, and one-sample inputs and outputs in the signature."""
        size = batch_size(self.inputs, self.outputs)
        if size is None or self._state:
            raise ArtifactError("auto_batch needs an artifact compiled for a batch of 2 or more along axis 0 of "
                                "every input and output, without state; compile with --shape NAME=B,...")
        self.inputs = [replace(info, shape=(1, *info.shape[1:])) for info in self.inputs]
        self.outputs = [replace(info, shape=(1, *info.shape[1:])) for info in self.outputs]
        return Batcher(self._executor.run, size, timeout)

    def _run(self, feeds: Mapping[str, object], states: dict[str, VariableState], stream: int = 0) -> dict:
        values = validate_inputs(self.inputs, feeds, self.frozen_inputs)
        if self._batcher is not None:
            return {info.name: value for info, value in zip(self.outputs, self._batcher.submit(values))}
        results = self._executors[stream].run(self._state.full_inputs(values, states))
        return {info.name: value for info, value in zip(self.outputs, self._state.take_outputs(results, states))}

    def query_state(self) -> list[VariableState]:
        """The state variables of the default request (infer()); empty for a stateless model."""
        return list(self._default_states.values())

    def reset_state(self) -> None:
        for variable in self._default_states.values():
            variable.reset()

    __call__ = infer

    def profile(self, feeds: Mapping[str, object]) -> tuple[dict, list[float]]:
        """infer() that also times every kernel (cpu and gpu artifacts; on a gpu, device time from OpenCL's
        profiling events): (outputs, seconds per kernel), the kernels in the order of `manifest["kernels"]`,
        which names each one's op and graph nodes."""
        if not hasattr(self._executor, "run_profiled"):
            raise ArtifactError(f"per-kernel profiles need a cpu or gpu artifact; this one is for target "
                                f"{self.target!r}")
        values = validate_inputs(self.inputs, feeds, self.frozen_inputs)
        if self._state:
            raise ArtifactError("per-kernel profiles of stateful models are not supported; compile the model "
                                "without state= to profile it")
        results, nanoseconds = self._executor.run_profiled(values)
        return {info.name: value for info, value in zip(self.outputs, results)}, [ns * 1e-9 for ns in nanoseconds]

    def next_stream(self) -> int:
        """The stream a new request runs on: the streams in turn."""
        self._requests_made += 1
        return (self._requests_made - 1) % self.num_streams

    def create_infer_request(self) -> InferRequest:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(thread_name_prefix="kiln-request")
        return InferRequest(self, self._pool, self.next_stream())

    def create_async_queue(self, jobs: int | None = None) -> AsyncInferQueue:
        """A queue of `jobs` requests (default: one per stream, at least 2)."""
        return AsyncInferQueue(self, jobs or max(2, self.num_streams))

    def close(self) -> None:
        """Release what the model holds beyond memory (the cpu library's worker threads, the request
        pool); it cannot infer afterwards. Garbage collection does the same; `with load(...)` closes."""
        if isinstance(self._executor, _Closed):
            return
        if self._pool is not None:
            self._pool.shutdown()
        for executor in self._executors:
            close = getattr(executor, "close", None)
            if close is not None:
                close()
        self._executor = _Closed()
        self._executors = [self._executor]

    def __enter__(self) -> "CompiledModel":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CompiledModel target={self.target} inputs={[i.name for i in self.inputs]}>"


def load(source, num_threads: int | None = None, verify_all: bool = False, device=None,
         performance_hint: str | None = None, num_streams: int | None = None, auto_batch: bool = False,
         batch_timeout: float = 0.002) -> CompiledModel:
    """Load an artifact directory (or an in-memory Artifact) for inference. Every file's size and
    every small file's sha256 are checked; `verify_all=True` hashes the weights too. `device`
    picks the OpenCL device of a gpu artifact (default: $KILN_OPENCL_DEVICE, else the first GPU)."""
    return CompiledModel(source, num_threads=num_threads, verify_all=verify_all, device=device,
                         performance_hint=performance_hint, num_streams=num_streams, auto_batch=auto_batch,
                         batch_timeout=batch_timeout)
