"""gpu tests build OpenCL programs into a private cache, never the user's ~/.cache/kiln."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_program_cache(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path_factory.mktemp("kiln-cache")))
    yield
    monkeypatch.undo()
