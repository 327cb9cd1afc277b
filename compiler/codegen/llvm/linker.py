"""Links object code and Kiln's C support into a shared library with the system C compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SUPPORT_C = tuple(Path(__file__).parent / "support" / name for name in ("parallel.c", "profile.c"))
_COMPILERS = ("cc", "gcc", "clang")


class LinkError(RuntimeError):
    """No C compiler was found, or it failed to link the library."""


def find_c_compiler() -> str:
    for name in [os.environ.get("CC", "")] + list(_COMPILERS):
        if name and shutil.which(name):
            return shutil.which(name)
    raise LinkError("the cpu target links with a C compiler, and none was found on PATH (tried cc, gcc, clang). "
                    "Install one, e.g. `apt-get install gcc`, or set CC to its path.")


def link_shared_library(objects: dict[str, bytes]) -> bytes:
    """A shared library (bytes) from object files (name -> bytes) plus the C support (thread pool, clock)."""
    compiler = find_c_compiler()
    with tempfile.TemporaryDirectory(prefix="kiln-link-") as directory:
        paths = []
        for name, data in sorted(objects.items()):
            path = Path(directory) / name
            path.write_bytes(data)
            paths.append(str(path))
        output = Path(directory) / "model.so"
        command = [compiler, "-shared", "-fPIC", "-O2", "-pthread", "-Wl,--build-id=none", "-o", str(output),
                   *map(str, SUPPORT_C), *paths, "-lm"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=directory)
        if result.returncode != 0:
            raise LinkError(f"{Path(compiler).name} failed to link the cpu artifact:\n{result.stderr.strip()}")
        return output.read_bytes()
