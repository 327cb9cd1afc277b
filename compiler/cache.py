"""Model caching: a compiled artifact is reused when nothing that shapes it has changed.

`compile(model, target, cache_dir=DIR)` (CLI: `--cache-dir`, or $KILN_CACHE_DIR) keys an artifact
by a content hash of its fields: the model's bytes, the target and every compile option (arrays
by their bytes; a `calibration` path by the bytes of its files too), the target machine (for cpu: triple, CPU name and features) and the compiler
(its version and a hash of its own source files). A hit loads the stored artifact; a miss compiles,
then logs (logger `kiln.cache`, INFO) which fields differ from the closest stored entry. Entries are
written to a private temporary directory and renamed into place, so concurrent compiles of the same
model never see half an entry.

Layout: DIR/artifacts/<key>/ (the artifact directory) beside DIR/artifacts/<key>.json (its fields).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np

from compiler.artifact import MANIFEST, Artifact, compiler_version

log = logging.getLogger("kiln.cache")
SOURCE_SUFFIXES = (".py", ".j2", ".c")


@cache
def compiler_digest() -> str:
    """sha256 over the compiler's own source files: an edited compiler never reuses old artifacts."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _model_bytes(model) -> bytes | None:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return Path(model).read_bytes()
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString(deterministic=True)
    return None  # an IR Graph: no stable bytes to key by


def _canonical(value):
    """Options as JSON-ready data; arrays by dtype, shape and a hash of their bytes."""
    if isinstance(value, np.ndarray):
        return {"array": str(value.dtype), "shape": list(value.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (os.PathLike,)):
        return str(value)
    return repr(value)


def _file_digest(path) -> dict | str:
    """A calibration path keyed by what it holds (an .npz, or a directory's .npy files), so new data
    under the same name misses; an unreadable path is keyed by name (the compile reports the error)."""
    path = Path(path)
    files = sorted(path.glob("*.npy")) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        return str(path)
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return {"path": str(path), "sha256": digest.hexdigest()}


def _machine(target: str, options: dict) -> dict:
    if target != "cpu":
        return {}
    from compiler.codegen.llvm.machine import MachineSpec

    spec = MachineSpec(options.get("triple", ""), options.get("cpu", ""), options.get("features", "")).resolved()
    return {"triple": spec.triple, "cpu": spec.cpu, "features": spec.features}


def cache_fields(model, target: str, options: dict) -> dict | None:
    """What the artifact depends on, or None when the model cannot be keyed (an IR Graph)."""
    data = _model_bytes(model)
    if data is None:
        return None
    options = {**options, "calibration": _file_digest(options["calibration"])} if options.get("calibration") else options
    return {"model": hashlib.sha256(data).hexdigest(), "target": target, "options": _canonical(options),
            "machine": _machine(target, options), "compiler": {"version": compiler_version(),
                                                               "source": compiler_digest()}}


def _key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def load_artifact(path: Path) -> Artifact:
    """An artifact directory back as an Artifact (the manifest without the keys saving adds)."""
    manifest = json.loads((path / MANIFEST).read_text())
    files = {name: (path / name).read_bytes() for name in manifest.pop("files")}
    for key in ("format", "format_version"):
        manifest.pop(key)
    return Artifact(manifest, files)


def _explain_miss(entries: Path, fields: dict) -> None:
    """Log which fields differ from the stored entry that shares the most with `fields`."""
    best, best_same = None, -1
    for path in entries.glob("*.json"):
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        same = sum(stored.get(name) == value for name, value in fields.items())
        if same > best_same:
            best, best_same = stored, same
    if best is None:
        log.info("cache miss: the cache in %s is empty", entries.parent)
    else:
        changed = [name for name, value in fields.items() if best.get(name) != value]
        log.info("cache miss: the closest entry differs in %s", ", ".join(changed))


def cached_compile(cache_dir: str | os.PathLike, model, target: str, options: dict,
                   build: Callable[[], Artifact]) -> Artifact:
    """The cached artifact for these fields, or `build()`'s, stored for next time."""
    fields = cache_fields(model, target, options)
    if fields is None:
        log.info("cache skipped: an IR Graph has no stable bytes to key by; pass the ONNX model instead")
        return build()
    entries = Path(cache_dir) / "artifacts"
    key = _key(fields)
    if (entries / key / MANIFEST).is_file():
        log.info("cache hit: %s", entries / key)
        return load_artifact(entries / key)
    entries.mkdir(parents=True, exist_ok=True)
    _explain_miss(entries, fields)
    artifact = build()
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=entries))
    try:
        artifact.save(staging / "artifact")
        (staging / "fields.json").write_text(json.dumps(fields, indent=1, sort_keys=True))
        os.replace(staging / "fields.json", entries / f"{key}.json")
        os.rename(staging / "artifact", entries / key)
    except OSError:  # another compile stored the same entry first: theirs is as good
        log.info("cache entry %s was stored by another compile meanwhile", key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return artifact
