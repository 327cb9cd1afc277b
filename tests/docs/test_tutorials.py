"""Runs the code of each tutorial, block by block in one namespace, so the pages stay true; and checks
that relative links between the docs (and from the README) point at files that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page, blocks, check", [
    ("write-a-pass.md", 4, lambda namespace: namespace["ops"] == ["Mul", "Relu"]),
    ("add-an-op.md", 5, lambda namespace: namespace["compiled"].target == "cpu"),
])
def test_tutorial_code_runs(page, blocks, check):
    doc = ROOT / "docs" / page
    code = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(code) >= blocks
    namespace: dict = {}
    for number, block in enumerate(code, 1):
        exec(compile(block, f"{doc.name} block {number}", "exec"), namespace)
    assert check(namespace)


def test_docs_links_resolve():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
