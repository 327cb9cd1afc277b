"""Runs the code of docs/add-an-op.md, block by block in one namespace, so the tutorial stays true."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "add-an-op.md"


def test_tutorial_code_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    assert namespace["compiled"].target == "cpu"
