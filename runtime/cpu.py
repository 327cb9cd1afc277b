"""Runs cpu artifacts: the native library through ctypes, one call per inference."""

from __future__ import annotations

import ctypes
import importlib
import os
import tempfile
import threading
import weakref

import numpy as np

from runtime.artifact_reader import ArtifactError
from runtime.dynamic_batch import BatchPlan
from runtime.dynamic_extent import ExtentPlan
from runtime.weights import widen_weights

_ALIGNMENT = 64
ENTRY = "kiln_run"
PROFILED_ENTRY = "kiln_run_profiled"
# IR dtype names numpy spells differently; these and bfloat16, int4, uint4, int2, uint2 are ml_dtypes types.
_NUMPY_NAMES = {"float8e4m3fn": "float8_e4m3fn", "float8e4m3fnuz": "float8_e4m3fnuz", "float8e5m2": "float8_e5m2",
                "float8e5m2fnuz": "float8_e5m2fnuz", "float8e8m0": "float8_e8m0fnu", "float4e2m1": "float4_e2m1fn"}


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of IR dtype `name`; ml_dtypes is imported only for the narrow types it defines."""
    name = _NUMPY_NAMES.get(name, name)
    try:
        return np.dtype(name)
    except TypeError:
        importlib.import_module("ml_dtypes")  # registers bfloat16, float8_*, int4, ... with numpy
        return np.dtype(name)


def aligned_empty(size: int) -> np.ndarray:
    """`size` bytes starting at a 64-byte boundary (numpy only guarantees 16)."""
    raw = np.empty(size + _ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGNMENT
    return raw[start: start + size]


_LIVE_LIBRARIES: set[str] = set()  # artifact model.so paths a live executor has dlopened


def _load_library(files) -> tuple[ctypes.CDLL, str | None]:
    """dlopen model.so: from the artifact directory, or from a private temporary copy. The thread
    pool is a static of the library and dlopen shares one handle per path, so a second live model of
    the same artifact gets a private copy: each model keeps the thread count it was loaded with.
    Returns the library and the artifact path it holds (None for a private copy)."""
    path = files.path_of("model.so")
    path = None if path is None else os.path.realpath(path)
    if path is not None and path not in _LIVE_LIBRARIES:
        _LIVE_LIBRARIES.add(path)
        return ctypes.CDLL(path), path
    handle, temporary = tempfile.mkstemp(prefix="kiln-", suffix=".so")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(bytes(files.read("model.so")))
        return ctypes.CDLL(temporary), None
    finally:
        os.unlink(temporary)


def _release(library: ctypes.CDLL, path: str | None) -> None:
    """Stop the library's worker threads; its artifact path may be dlopened as shared again."""
    release = getattr(library, "kiln_release_threads", None)  # absent in artifacts from older compilers
    if release is not None:
        release()
    _LIVE_LIBRARIES.discard(path)


class CpuExecutor:
    """Holds the library, the weights and one workspace per concurrent caller. `close()` (or garbage
    collection) stops the library's worker threads."""

    def __init__(self, files, num_threads: int | None = None):
        self.manifest = files.manifest
        try:
            self.library, path = _load_library(files)
            self.close = weakref.finalize(self, _release, self.library, path)
            if self.manifest.get("entry") != ENTRY:
                raise AttributeError(f"entry {self.manifest.get('entry')!r} is not {ENTRY!r}")
            self.entry = getattr(self.library, ENTRY)
            # None in artifacts from before per-kernel profiling: they still run, but cannot be profiled.
            self.profiled_entry = getattr(self.library, self.manifest.get("profiled_entry", PROFILED_ENTRY), None)
            self.layout = getattr(self.library, "kiln_layout")
        except (OSError, AttributeError) as error:
            raise ArtifactError(f"cannot load the native library of this artifact: {error}. It was built for "
                                f"{self.manifest.get('machine')}; recompile for this machine.") from None
        self.entry.restype = ctypes.c_int
        self.entry.argtypes = [ctypes.c_void_p] * 4
        self.batch, self.extent = BatchPlan.of(self.manifest), ExtentPlan.of(self.manifest)
        if self.batch or self.extent:  # kiln_run_extent takes the batch (ignored when static) and the sizes
            self.sized_entry = self.library.kiln_run_extent if self.extent else self.library.kiln_run_batch
            self.sized_entry.restype = ctypes.c_int
            self.sized_entry.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] + \
                ([ctypes.POINTER(ctypes.c_int64)] if self.extent else [])
        # the library's buffer shapes (a dynamic batch's at the entries it is compiled for, a dynamic extent's
        # at its bound)
        manifest = self.manifest
        self._input_buffers = self.batch.input_shapes(manifest) if self.batch else \
            [entry["type"]["shape"] for entry in manifest["inputs"]]
        output_shapes = self.batch.output_shapes(manifest) if self.batch else \
            [entry["type"]["shape"] for entry in manifest["outputs"]]
        if self.extent:
            self._input_buffers = self.extent.input_shapes(self._input_buffers)
            output_shapes = self.extent.output_shapes(output_shapes)
        self._output_buffers = [(shape, numpy_dtype(entry["type"]["tensor"]))
                                for shape, entry in zip(output_shapes, manifest["outputs"])]
        if self.profiled_entry is not None:
            self.profiled_entry.restype = ctypes.c_int
            self.profiled_entry.argtypes = [ctypes.c_void_p] * 5
        self.weights = self._weights(files.read("weights.bin"))
        self.workspace_bytes = self.manifest["memory_plan"]["workspace_bytes"]
        self.threads = self.library.kiln_set_num_threads(int(num_threads or 0))
        self._precompute()
        self._local = threading.local()

    def _weights(self, stored) -> np.ndarray:
        """The buffer kiln_run reads as its weights: weights.bin itself when it can be (a mmap is
        page-aligned), else one aligned copy, with room after the blob for the precomputed values,
        into which float16-stored weights (precision fp16) are widened directly."""
        plan, storage = self.manifest["memory_plan"], self.manifest.get("weights_storage")
        blob_bytes = len(stored) if storage is None else storage["bytes"]
        self._check_layout(blob_bytes)
        size = plan["precomputed_offset"] + plan["precomputed_bytes"] if plan.get("precomputed_bytes") else blob_bytes
        mapped = np.frombuffer(stored, dtype=np.uint8)
        if storage is None and size == blob_bytes and size and mapped.ctypes.data % _ALIGNMENT == 0:
            return mapped
        buffer = aligned_empty(max(size, 1))
        if storage is not None:
            widen_weights(stored, storage, buffer[:blob_bytes])
        else:
            buffer[:blob_bytes] = mapped
        return buffer

    def _check_layout(self, weights_bytes: int) -> None:
        """The library states the buffer sizes it was built for; the manifest and files must agree."""
        self.layout.restype = ctypes.POINTER(ctypes.c_int64)
        header = self.layout()
        n_in, n_out = header[2], header[3]
        built = [header[i] for i in range(6 + n_in + n_out)]
        shapes = self._input_buffers + [shape for shape, _ in self._output_buffers]
        dtype_bytes = [numpy_dtype(e["type"]["tensor"]).itemsize * int(np.prod(shape, dtype=np.int64))
                       for e, shape in zip(self.manifest["inputs"] + self.manifest["outputs"], shapes)]
        plan = self.manifest["memory_plan"]
        described = [weights_bytes, plan["workspace_bytes"], len(self.manifest["inputs"]), len(self.manifest["outputs"]),
                     *dtype_bytes, plan.get("precomputed_offset"), plan.get("precomputed_bytes")]
        if built != described:
            raise ArtifactError("the manifest or weights.bin does not match the native library (buffer sizes differ); "
                                "the artifact is damaged or mixed from two compiles: recompile it")

    def _precompute(self) -> None:
        """Values the plan computes once from constants (too large to store in weights.bin) go after
        the weights blob, in the room _weights left for them: compute them now."""
        if not self.manifest["memory_plan"].get("precomputed_bytes"):
            return
        status = self.library.kiln_precompute(ctypes.c_void_p(self.weights.ctypes.data))
        if status != 0:
            raise RuntimeError(f"the native model's kiln_precompute returned error status {status}")

    def _workspace(self) -> np.ndarray:
        workspace = getattr(self._local, "workspace", None)
        if workspace is None:
            workspace = self._local.workspace = aligned_empty(max(self.workspace_bytes, 1))
        return workspace

    def run(self, inputs: list) -> list:
        """Outputs for `inputs` (already validated against the signature by the caller)."""
        return self._call(inputs, None)

    def run_profiled(self, inputs: list) -> tuple[list, list[int]]:
        """run() that also times every kernel: (outputs, nanoseconds per kernel in manifest["kernels"] order)."""
        if self.profiled_entry is None or "kernels" not in self.manifest:
            raise ArtifactError("this cpu artifact was compiled by a Kiln without per-kernel profiling; "
                                "recompile it to profile it")
        nanoseconds = np.zeros(len(self.manifest["kernels"]), dtype=np.int64)
        return self._call(inputs, nanoseconds), nanoseconds.tolist()

    def _call(self, inputs: list, nanoseconds: np.ndarray | None) -> list:
        inputs = [np.ascontiguousarray(value) for value in inputs]
        batch = self.batch.batch_of(inputs) if self.batch else None
        if batch is not None and batch > self.batch.chunk:
            return self._in_chunks(inputs, batch, nanoseconds)
        extent = self.extent.sizes_of(inputs) if self.extent else None
        outputs = self._outputs()
        if batch is not None or extent is not None:
            inputs = self._staged(inputs, batch, extent)
        input_pointers = (ctypes.c_void_p * max(len(inputs), 1))(*[a.ctypes.data for a in inputs])
        output_pointers = (ctypes.c_void_p * max(len(outputs), 1))(*[a.ctypes.data for a in outputs])
        buffers = (self.weights.ctypes.data, self._workspace().ctypes.data, input_pointers, output_pointers)
        timing = None if nanoseconds is None else nanoseconds.ctypes.data
        if extent is not None:
            status = self.sized_entry(*buffers, timing, batch or 1, (ctypes.c_int64 * len(extent))(*extent))
        elif batch is not None:
            status = self.sized_entry(*buffers, timing, batch)
        elif nanoseconds is None:
            status = self.entry(*buffers)
        else:
            status = self.profiled_entry(*buffers, timing)
        if status != 0:
            raise RuntimeError(f"the native model returned error status {status}")
        outputs = outputs if batch is None else self.batch.first_entries(outputs, batch)
        return outputs if extent is None else self.extent.cut(outputs, extent)

    def _outputs(self) -> list[np.ndarray]:
        """Buffers for a call's outputs: fresh ones, or with a dynamic extent this thread's (its results are
        copies cut from them)."""
        if not self.extent:
            return [np.empty(shape, dtype=dtype) for shape, dtype in self._output_buffers]
        outputs = getattr(self._local, "outputs", None)
        if outputs is None:
            outputs = self._local.outputs = [np.empty(shape, dtype=dtype) for shape, dtype in self._output_buffers]
        return outputs

    def _in_chunks(self, inputs: list, batch: int, nanoseconds: np.ndarray | None) -> list:
        """An unbounded batch larger than the compiled chunk, chunk by chunk; kernel times add up."""
        def call(part: list) -> list:
            times = None if nanoseconds is None else np.zeros_like(nanoseconds)
            outputs = self._call(part, times)
            if nanoseconds is not None:
                np.add(nanoseconds, times, out=nanoseconds)
            return outputs
        return self.batch.in_chunks(inputs, batch, call)

    def _staged(self, inputs: list, batch: int | None, extent: int | None) -> list:
        """Inputs in buffers of the bounds (kernels that run every item read all entries and positions). A dynamic
        batch's entries past `batch` keep earlier values, valid numbers (an index, a divisor) of the right type;
        a dynamic extent's buffers are zero past the given values."""
        if (batch is None or batch == self.batch.chunk) and (extent is None or extent == self.extent.bounds):
            return inputs
        staging = getattr(self._local, "staging", None)
        if staging is None:
            dynamic = [(self.batch and self.batch.input_factors[i] is not None) or
                       (self.extent and bool(self.extent.input_axes[i])) for i in range(len(inputs))]
            staging = self._local.staging = [
                np.zeros(shape, numpy_dtype(entry["type"]["tensor"])) if held else None
                for held, shape, entry in zip(dynamic, self._input_buffers, self.manifest["inputs"])]
        staged = []
        for index, (value, buffer) in enumerate(zip(inputs, staging)):
            if buffer is not None and self.extent and self.extent.input_axes[index]:
                value = self.extent.stage(value, buffer)
            elif buffer is not None:
                buffer[:batch] = value
                value = buffer
            staged.append(value)
        return staged
