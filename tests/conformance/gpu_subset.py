"""Which ONNX conformance cases the gpu target runs by default.

PoCL builds an OpenCL program per case (~0.25 s), so the whole set (1,910 cases, ~9 minutes on
one core) runs only with KILN_FULL_GPU_CONFORMANCE=1. By default a fixed subset runs, chosen by a
rule over the installed onnx package's cases: in name order, a case is kept when it uses an op
(any node of its model, so expanded function bodies count) that fewer than CASES_PER_OP kept
cases use so far. Every op the cases exercise is thus covered by up to CASES_PER_OP cases (333
cases with onnx 1.23, ~2 minutes on one core with cold caches); cases of ops the gpu target
cannot compile are rejected before any OpenCL build, so they cost little.
"""

from __future__ import annotations

import os

FULL_ENV = "KILN_FULL_GPU_CONFORMANCE"
CASES_PER_OP = 2


def default_gpu_cases(cases) -> set[str] | None:
    """Names of the cases the gpu target runs, or None for all (KILN_FULL_GPU_CONFORMANCE=1)."""
    if os.environ.get(FULL_ENV, "") not in ("", "0"):
        return None
    kept, uses = set(), {}
    for case in sorted(cases, key=lambda c: c.name):
        ops = {node.op_type for node in case.model.graph.node}
        if any(uses.get(op, 0) < CASES_PER_OP for op in ops):
            kept.add(case.name)
            for op in ops:
                uses[op] = uses.get(op, 0) + 1
    return kept
