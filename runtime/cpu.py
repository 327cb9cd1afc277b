"""Runs cpu artifacts: the native library through ctypes, one call per inference."""

from __future__ import annotations

import ctypes
import os
import tempfile
import threading

import numpy as np

from runtime.artifact_reader import ArtifactError

_ALIGNMENT = 64


def aligned_empty(size: int) -> np.ndarray:
    """`size` bytes starting at a 64-byte boundary (numpy only guarantees 16)."""
    raw = np.empty(size + _ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGNMENT
    return raw[start: start + size]


def _load_library(files) -> ctypes.CDLL:
    """dlopen model.so: from the artifact directory, or from a private temporary copy."""
    path = files.path_of("model.so")
    if path is not None:
        return ctypes.CDLL(str(path))
    handle, temporary = tempfile.mkstemp(prefix="kiln-", suffix=".so")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(bytes(files.read("model.so")))
        return ctypes.CDLL(temporary)
    finally:
        os.unlink(temporary)


class CpuExecutor:
    """Holds the library, the weights and one workspace per concurrent caller."""

    def __init__(self, files, num_threads: int | None = None):
        self.manifest = files.manifest
        try:
            self.library = _load_library(files)
            self.entry = getattr(self.library, self.manifest["entry"])
        except (OSError, AttributeError) as error:
            raise ArtifactError(f"cannot load the native library of this artifact: {error}. It was built for "
                                f"{self.manifest.get('machine')}; recompile for this machine.") from None
        self.entry.restype = ctypes.c_int
        self.entry.argtypes = [ctypes.c_void_p] * 4
        weights = files.read("weights.bin")
        if len(weights) != self.manifest["memory_plan"]["weights_bytes"]:
            raise ArtifactError("weights.bin does not match the memory plan; the artifact is damaged, recompile it")
        self.weights = np.frombuffer(weights, dtype=np.uint8) if len(weights) else aligned_empty(1)
        if self.weights.ctypes.data % _ALIGNMENT:  # in-memory bytes: copy to an aligned buffer (a mmap is page-aligned)
            aligned = aligned_empty(len(weights))
            aligned[:] = self.weights
            self.weights = aligned
        self.workspace_bytes = self.manifest["memory_plan"]["workspace_bytes"]
        self.threads = self.library.kiln_set_num_threads(int(num_threads or 0))
        self._local = threading.local()

    def _workspace(self) -> np.ndarray:
        workspace = getattr(self._local, "workspace", None)
        if workspace is None:
            workspace = self._local.workspace = aligned_empty(max(self.workspace_bytes, 1))
        return workspace

    def run(self, inputs: list) -> list:
        """Outputs for `inputs` (already validated against the signature by the caller)."""
        outputs = [np.empty(entry["type"]["shape"], dtype=entry["type"]["tensor"]) for entry in self.manifest["outputs"]]
        inputs = [np.ascontiguousarray(value) for value in inputs]
        input_pointers = (ctypes.c_void_p * max(len(inputs), 1))(*[a.ctypes.data for a in inputs])
        output_pointers = (ctypes.c_void_p * max(len(outputs), 1))(*[a.ctypes.data for a in outputs])
        status = self.entry(self.weights.ctypes.data, self._workspace().ctypes.data, input_pointers, output_pointers)
        if status != 0:
            raise RuntimeError(f"the native model returned error status {status}")
        return outputs
