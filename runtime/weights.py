"""Widens an artifact's stored weights (precision fp16: some float32 weights kept as float16) into
the float32 blob the kernels read, once at load. The manifest's "weights_storage" lists each weight's
stored dtype and offsets (compiler/precision/weights_fp16.py writes it)."""

from __future__ import annotations

import numpy as np

from runtime.artifact_reader import ArtifactError


def widen_weights(stored, storage: dict, out: np.ndarray) -> np.ndarray:
    """Fill `out` (uint8, storage["bytes"] long) from the `stored` bytes of weights.bin; returns `out`."""
    stored = np.frombuffer(stored, np.uint8)
    out[:] = 0
    for entry in storage["weights"]:
        offset, start, size = entry["offset"], entry["stored_offset"], entry["bytes"]
        half = entry["dtype"] == "float16"
        stored_size = size // 2 if half else size
        if start + stored_size > len(stored) or offset + size > len(out):
            raise ArtifactError(f"weight {entry['name']!r} lies outside weights.bin or the weights the library "
                                "was built for; the artifact is damaged, recompile it")
        data = stored[start: start + stored_size]
        out[offset: offset + size] = data.view(np.float16).astype(np.float32).view(np.uint8) if half else data
    return out
