"""The precision option of compile() (`precision=`, `--precision`): its names and who takes what.

fp32 is the default; "float32" and "float16" are accepted as the older names of fp32 and fp16.
fp16 (compiler/precision/) is compiled for the cpu and gpu targets; int8 (compiler/quantization/)
checks its own targets.
"""

from __future__ import annotations

PRECISIONS = {"fp32": "fp32", "float32": "fp32", "fp16": "fp16", "float16": "fp16", "int8": "int8"}


def precision_of(options: dict) -> str:
    """The canonical precision ("fp32", "fp16", "int8") asked for ("float32"/"float16" are aliases);
    an unknown name is returned as given, for the target to report (precision_problem)."""
    asked = options.get("precision", "fp32")
    return PRECISIONS.get(asked, asked)


FP16_TARGETS = ("cpu", "gpu")


def precision_problem(options: dict, target: str | None = None) -> str | None:
    """Why the precision asked for cannot be compiled (for `target`, when given), or None."""
    asked = options.get("precision", "fp32")
    if asked not in PRECISIONS:
        return f"precision {asked!r} is not one of {sorted(PRECISIONS)}"
    if target is not None and PRECISIONS[asked] == "fp16" and target not in FP16_TARGETS:
        return f"precision {asked!r} is compiled for the targets {list(FP16_TARGETS)}, not {target!r}"
    return None
