"""docs/cli.md and docs/api.md are generated (docs/build.py) and must match the code they describe."""

import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _build_module():
    spec = importlib.util.spec_from_file_location("docs_build", DOCS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["cli.md", "api.md"])
def test_generated_page_is_up_to_date(page):
    build = _build_module()
    assert (DOCS / page).read_text() == build.PAGES[page](), f"docs/{page} is stale: run `python docs/build.py`"


def test_every_command_has_a_section():
    text = (DOCS / "cli.md").read_text()
    for command in ("compile", "run", "bench", "info", "check", "diff", "viz", "devices", "disasm"):
        assert f"## kiln {command}\n" in text
