"""The compiled artifact: a versioned manifest plus payload files (weights, code, graph).

Saved as a directory (see docs/artifact-format.md). Deterministic: the manifest is written
with sorted keys and carries a SHA-256 for every payload file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "kiln-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def compiler_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kiln")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Artifact:
    """Everything `runtime.load` needs: `manifest` (JSON-ready dict) and `files` (name -> bytes)."""

    manifest: dict
    files: dict[str, bytes] = field(default_factory=dict)

    def full_manifest(self) -> dict:
        checksums = {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                     for name, data in sorted(self.files.items())}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **self.manifest, "files": checksums}

    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.full_manifest(), indent=2, sort_keys=True) + "\n").encode()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact directory at `path` (created or overwritten file by file)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{path} exists and is not an artifact directory; choose another output path")
        path.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (path / name).write_bytes(data)
        (path / MANIFEST).write_bytes(self.manifest_bytes())
        return path
