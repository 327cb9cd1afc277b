"""Expected-failure lists: one file per target, `case_name  # reason` per line."""

from __future__ import annotations

from pathlib import Path

DIRECTORY = Path(__file__).parent / "expected_failures"


def expected_failures(target: str) -> dict[str, str]:
    """case name -> reason, from expected_failures/<target>.txt; a line without a reason is an error."""
    failures = {}
    for number, line in enumerate((DIRECTORY / f"{target}.txt").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition("#")
        if not reason.strip():
            raise ValueError(f"{DIRECTORY / target}.txt line {number}: {name.strip()!r} needs a reason after '#'")
        failures[name.strip()] = reason.strip()
    return failures
