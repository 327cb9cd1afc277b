"""Importing every module of a package once: how registries (ops, passes, kernels, targets) fill up.

Each module registers what it defines when imported (by decorator or call), so adding an op
family, a pass, a kernel or a target is adding a file; nobody keeps a central list.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache


@cache
def import_submodules(package_name: str, skip: frozenset[str] = frozenset()) -> None:
    """Import each module of `package_name` except those named in `skip` (once per process)."""
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in skip:
            importlib.import_module(f"{package_name}.{info.name}")
