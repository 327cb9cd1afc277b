"""Reads and checks an artifact directory (or an in-memory artifact) before anything runs it."""

from __future__ import annotations

import hashlib
import json
import mmap
from pathlib import Path

FORMAT = "kiln-artifact"
SUPPORTED_VERSIONS = (1,)
# Files up to this size are hashed at every load; larger ones (weights) only when asked:
# hashing 100 MB of weights takes longer than loading and running most models.
ALWAYS_HASHED_BYTES = 16 << 20


class ArtifactError(ValueError):
    """The artifact is missing, damaged, or from an unsupported format version."""


class ArtifactFiles:
    """The manifest and checked payload files of one artifact; weights are memory-mapped. An artifact
    may hold parts, each a whole artifact whose files carry a name prefix (`part(prefix)`)."""

    def __init__(self, manifest: dict, files: dict, root: Path | None = None, prefix: str = ""):
        self.manifest = manifest
        self._files = files
        self.root = root
        self.prefix = prefix

    def path_of(self, name: str) -> Path | None:
        """Where payload file `name` lies on disk (None for an in-memory artifact)."""
        self.read(name)
        return None if self.root is None else self.root / (self.prefix + name)

    def read(self, name: str):
        """The bytes (or a read-only memory map) of payload file `name`."""
        try:
            return self._files[self.prefix + name]
        except KeyError:
            raise ArtifactError(f"the artifact has no file {self.prefix + name!r}; it lists {sorted(self._files)}") \
                from None

    def part(self, prefix: str) -> "ArtifactFiles":
        """The part whose files are named `prefix` + name, with its own manifest (`prefix`manifest.json);
        its files were checked with the whole artifact's."""
        try:
            manifest = json.loads(bytes(self.read(prefix + "manifest.json")))
        except json.JSONDecodeError as error:
            raise ArtifactError(f"part {prefix!r} of the artifact has a damaged manifest ({error}); recompile it") \
                from None
        _check_manifest(manifest, f"part {prefix!r} of the artifact")
        return ArtifactFiles(manifest, self._files, self.root, self.prefix + prefix)


def _check_manifest(manifest: dict, where: str) -> None:
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{where} is not a Kiln artifact (manifest format {manifest.get('format')!r})")
    if manifest.get("format_version") not in SUPPORTED_VERSIONS:
        raise ArtifactError(f"{where} has format version {manifest.get('format_version')!r}; this runtime reads "
                            f"{SUPPORTED_VERSIONS}. Recompile the model with this Kiln version.")
    for key in ("target", "inputs", "outputs", "files"):
        if key not in manifest:
            raise ArtifactError(f"{where}: manifest lacks {key!r}; the artifact is damaged, recompile it")


def _check_file(name: str, data, expected: dict, where: str, hashed: bool) -> None:
    if len(data) != expected["size"]:
        raise ArtifactError(f"{where}: file {name!r} has {len(data)} bytes, the manifest says {expected['size']}; "
                            "the artifact is damaged, recompile it")
    if hashed and hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ArtifactError(f"{where}: file {name!r} does not match its checksum; the artifact is damaged, recompile it")


def _map(path: Path):
    if path.stat().st_size == 0:
        return b""
    with open(path, "rb") as handle:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def read_artifact(source, verify_all: bool = False) -> ArtifactFiles:
    """Open an artifact directory path, or an in-memory artifact (an object with a `full_manifest()` and `files`).

    Every file's size is checked, and the sha256 of files up to ALWAYS_HASHED_BYTES; `verify_all`
    hashes the large ones (weights) too.
    """
    root = None
    if hasattr(source, "full_manifest") and hasattr(source, "files"):
        manifest, files, where = source.full_manifest(), dict(source.files), "the in-memory artifact"
    else:
        root = Path(source).resolve()
        where = f"artifact {str(root)!r}"
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise ArtifactError(f"{where} not found: expected a directory with manifest.json (made by `kiln compile`)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ArtifactError(f"{where}: manifest.json is not valid JSON ({error})") from None
        _check_manifest(manifest, where)
        files = {}
        for name in manifest["files"]:
            path = root / name
            if Path(name).name != name or name in ("", ".", ".."):
                raise ArtifactError(f"{where}: manifest names file {name!r} outside the artifact directory")
            if not path.is_file():
                raise ArtifactError(f"{where}: payload file {name!r} is missing")
            files[name] = _map(path)
    _check_manifest(manifest, where)
    if root is not None:  # an in-memory artifact was just hashed by the compiler that made it
        for name, expected in manifest["files"].items():
            _check_file(name, files[name], expected, where, verify_all or expected["size"] <= ALWAYS_HASHED_BYTES)
    return ArtifactFiles(manifest, files, root)
