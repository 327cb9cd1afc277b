"""The fp16 report: what stays float32 and why, weight bytes before and after, and the output
error of the fp16 artifact against the float32 graph on the check data.

Stored as report.json in the artifact (and at `--report PATH`), printed by `kiln compile`.
"""

from __future__ import annotations

import json

import numpy as np

from compiler.artifact import Artifact
from compiler.ir.graph import Graph
from compiler.precision.fp16_check import Fp16Plan, is_float32_weight

REPORT = "report.json"
ACTIVATIONS = {"cpu": "float32 (weights widened at load; kept_nodes would overflow on float16 devices)",
               "gpu": "float16 storage, float arithmetic; kept_nodes store float32"}


def fp16_report(graph: Graph, plan: Fp16Plan, target: str) -> dict:
    """The report before the artifact runs: kept nodes and weights, and weight bytes."""
    float_weights = [node for node in graph.nodes() if is_float32_weight(node)]
    full = sum(np.asarray(node.attrs["value"]).nbytes for node in float_weights)
    stored = sum(np.asarray(node.attrs["value"]).nbytes // (2 if node.name in plan.half_weights else 1)
                 for node in float_weights)
    return {"kind": "fp16", "target": target, "checked_on": plan.checked_on, "activations": ACTIVATIONS[target],
            "kept_nodes": [{"node": name, "op": graph.node(name).qualified_op, "why": why}
                           for name, why in sorted(plan.kept_nodes.items())],
            "kept_weights": [{"weight": name, "why": why} for name, why in sorted(plan.kept_weights.items())],
            "weights": {"float32_bytes": full, "stored_bytes": stored, "ratio": round(stored / full, 4) if full else 1.0},
            "output_error": None}


def output_error(expected: list[np.ndarray], actual: list[np.ndarray]) -> dict:
    """Max abs, max abs relative to the largest expected magnitude, and SNR in dB over all outputs'
    elements that are finite in both; `non_finite` counts elements where only one is finite, or the
    infinities/NaNs differ (an fp16 overflow shows there)."""
    with np.errstate(invalid="ignore"):
        expected = np.concatenate([np.asarray(e, np.float64).ravel() for e in expected])
        actual = np.concatenate([np.asarray(a, np.float64).ravel() for a in actual])
    finite = np.isfinite(expected) & np.isfinite(actual)
    same_special = (expected == actual) | (np.isnan(expected) & np.isnan(actual))
    non_finite = int(np.count_nonzero(~finite & ~same_special))
    expected, actual = expected[finite], actual[finite]
    error = actual - expected
    signal, noise = float(np.sum(expected ** 2)), float(np.sum(error ** 2))
    peak = float(np.abs(expected).max()) if expected.size else 0.0
    max_abs = float(np.abs(error).max()) if error.size else 0.0
    return {"max_abs": max_abs, "max_relative": max_abs / peak if peak else max_abs,
            "snr_db": float(10 * np.log10(signal / noise)) if noise and signal else None,  # None: exact or no signal
            "non_finite": non_finite}


def add_report(artifact: Artifact, graph: Graph, plan: Fp16Plan, target: str, options: dict) -> Artifact:
    """`artifact` with report.json: the plan's report and the output error of the artifact against the
    float32 graph over the check samples (or why it could not run here, e.g. no device with cl_khr_fp16)."""
    import runtime
    from runtime.artifact_reader import ArtifactError

    report = fp16_report(graph, plan, target)
    feeds = [{name: stack[index] for name, stack in plan.samples.items()} for index in range(len(plan.expected))]
    try:
        model = runtime.load(artifact, device=options.get("device"))
    except (ArtifactError, ImportError) as error:
        report["output_error"] = {"not_measured": str(error)}
    else:
        names = [name for name, _ in graph.outputs]
        actual = [np.asarray(model.infer(feed)[name]) for feed in feeds for name in names]
        report["output_error"] = output_error([np.asarray(e) for run in plan.expected for e in run], actual)
    artifact.files[REPORT] = (json.dumps(report, indent=1, sort_keys=True) + "\n").encode()
    return artifact


def format_report(report: dict) -> str:
    """The printed form: kept nodes and weights with why, weight bytes, output error."""
    weights = report["weights"]
    lines = [f"fp16 ({report['target']}): weights {weights['float32_bytes']:,} -> {weights['stored_bytes']:,} bytes "
             f"({weights['ratio']:.2f}x); checked on {report['checked_on']}", f"  activations: {report['activations']}"]
    for entry in report["kept_nodes"]:
        lines.append(f"  kept float32: node {entry['node']!r} ({entry['op']}): {entry['why']}")
    for entry in report["kept_weights"]:
        lines.append(f"  kept float32: weight {entry['weight']!r}: {entry['why']}")
    error = report.get("output_error")
    if error and "not_measured" in error:
        lines.append(f"  output error: not measured here ({error['not_measured']})")
    elif error:
        snr = "n/a" if error["snr_db"] is None else f"{error['snr_db']:.1f} dB"
        special = f", {error['non_finite']} element(s) inf/NaN unlike float32" if error["non_finite"] else ""
        lines.append(f"  output error vs float32: max abs {error['max_abs']:.3g}, max relative "
                     f"{error['max_relative']:.3g}, SNR {snr}{special}")
    return "\n".join(lines)
