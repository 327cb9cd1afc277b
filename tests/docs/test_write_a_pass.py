"""Runs the code of docs/write-a-pass.md, block by block in one namespace, so the tutorial stays true."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "write-a-pass.md"


def test_tutorial_code_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    assert namespace["ops"] == ["Mul", "Relu"]


def test_docs_links_resolve():
    """Relative links between the docs (and from the README) point at files that exist."""
    root = DOC.parents[1]
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
