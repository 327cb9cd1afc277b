"""runtime/weights.py: weights.bin with float16-stored weights widened into the float32 blob the
kernels read (precision fp16), checked against numpy; a table that points outside is refused."""

import numpy as np
import pytest

from runtime import ArtifactError
from runtime.weights import widen_weights


def storage_of(arrays: dict[str, np.ndarray], half: set[str]) -> tuple[bytes, dict, bytes]:
    """(stored bytes, "weights_storage", the float32 blob) for arrays laid out 64-byte aligned."""
    stored, blob, entries = bytearray(), bytearray(), []
    for name, array in arrays.items():
        kept = array.astype(np.float16) if name in half else array
        stored.extend(b"\0" * (-len(stored) % 64))
        blob.extend(b"\0" * (-len(blob) % 64))
        entries.append({"name": name, "dtype": str(kept.dtype), "bytes": array.nbytes, "offset": len(blob),
                        "stored_offset": len(stored)})
        stored.extend(kept.tobytes())
        blob.extend((array.astype(np.float16).astype(np.float32) if name in half else array).tobytes())
    return bytes(stored), {"bytes": len(blob), "stored_bytes": len(stored), "weights": entries}, bytes(blob)


def test_widening_matches_numpy_for_every_float16_value():
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    arrays = {"all": every[np.isfinite(every)].astype(np.float32), "ids": np.arange(5, dtype=np.int64),
              "kept": np.array([1e-8, 7e4], np.float32)}
    stored, storage, expected = storage_of(arrays, {"all"})
    assert len(stored) < len(expected)
    widened = widen_weights(stored, storage, np.empty(storage["bytes"], np.uint8))
    assert widened.tobytes() == expected


def test_a_table_pointing_outside_weights_bin_is_refused():
    stored, storage, _ = storage_of({"w": np.ones(8, np.float32)}, {"w"})
    with pytest.raises(ArtifactError, match="weight 'w' lies outside weights.bin"):
        widen_weights(stored[:8], storage, np.empty(storage["bytes"], np.uint8))
