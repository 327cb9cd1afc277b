"""Every error message docs/troubleshooting.md quotes is still raised by the code, word for word."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"


def _string(node) -> str | None:
    """A string literal as Python joins it (implicit concatenation included); {} for f-string fields."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _source_text() -> str:
    strings = []
    for package in ("compiler", "runtime", "frontends"):
        for path in sorted((ROOT / package).rglob("*.py")):
            strings += [text for node in ast.walk(ast.parse(path.read_text())) if (text := _string(node))]
    return "\n".join(strings)


def test_quoted_messages_exist_in_the_code():
    quoted = re.findall(r"\*\*`([^`]+)`\*\*", DOC.read_text())
    assert len(quoted) >= 15
    source = _source_text()
    missing = []
    for message in quoted:  # placeholders (N, 'cpu') stand for formatted parts: match the pieces between them
        pieces = [p for p in re.split(r"\bN\b|'cpu'|\.\.\.", message) if p.strip()]
        if not all(piece.strip(" (") in source for piece in pieces):
            missing.append(message)
    assert not missing, f"troubleshooting.md quotes messages the code no longer raises: {missing}"
