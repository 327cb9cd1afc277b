"""Software execution of GNA streams (docs/gna-isa.md): reader, bit-exact executor, fp32 emulation.

numpy and the standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.gna.format import STREAM_FILE, GnaFormatError
from runtime.gna.model import GnaModel, LayerTrace
from runtime.gna.reader import Stream, read_stream


def stream_bytes(source) -> bytes:
    """The stream of `source`: a .gna file, or a gna artifact directory (its model.gna)."""
    path = Path(source)
    if path.is_dir():
        from runtime.artifact_reader import read_artifact

        files = read_artifact(path)
        if files.manifest["target"] != "gna":
            raise GnaFormatError(f"{path} is a {files.manifest['target']!r} artifact, not a gna one")
        return bytes(files.read(STREAM_FILE))
    if not path.is_file():
        raise GnaFormatError(f"{path}: no such GNA stream file or artifact directory")
    return path.read_bytes()


def load(source, mode: str = "exact") -> GnaModel:
    """A GnaModel from stream bytes, a .gna file or a gna artifact directory; `mode` is "exact" or "fp32"."""
    if isinstance(source, (str, os.PathLike)):
        source = stream_bytes(source)
    return GnaModel(source, mode)


__all__ = ["GnaFormatError", "GnaModel", "LayerTrace", "Stream", "load", "read_stream", "stream_bytes"]
