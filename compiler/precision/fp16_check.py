"""Which values and weights of a float graph stay float32 under precision fp16, and why.

float16 holds magnitudes up to 65504 and keeps 11 significant bits down to 6.1e-5 (below that,
subnormals lose bits until 6e-8 rounds to zero). Values: the float graph runs through the ref
interpreter over the check samples (compiler/calibration_data.py); a node whose float32 output
exceeds 65504 in magnitude would overflow to inf in half storage, so it keeps float32. Weights: a
float32 constant is stored as float16 unless that changes it by more than rounding does (a
relative L2 error above 2^-11): inf from overflow, zeros and lost bits from underflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.calibration_data import calibration_samples, sample_count, value_ranges
from compiler.ir.graph import Graph
from compiler.ir.types import TensorType

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
ROUNDING = 2.0 ** -11  # float16's unit roundoff: the relative error rounding alone may cause


@dataclass
class Fp16Plan:
    """`kept_nodes`/`kept_weights`: name -> why it stays float32; `half_weights`: constants stored as
    float16; `samples` the check ran on and the float graph's outputs for each (`expected`)."""

    kept_nodes: dict[str, str] = field(default_factory=dict)
    kept_weights: dict[str, str] = field(default_factory=dict)
    half_weights: set[str] = field(default_factory=set)
    checked_on: str = ""
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    expected: list[list[np.ndarray]] = field(default_factory=list)


def weight_problem(array: np.ndarray) -> str | None:
    """Why float16 storage would change this float32 weight beyond rounding, or None."""
    with np.errstate(invalid="ignore"):
        wide = np.asarray(array, np.float64)
    finite = wide[np.isfinite(wide)]
    peak = float(np.abs(finite).max()) if finite.size else 0.0
    if peak > FP16_MAX:
        return f"overflow: max |w| = {peak:.4g} > {FP16_MAX:g}"
    with np.errstate(over="ignore", invalid="ignore"):
        error = np.linalg.norm((wide.astype(np.float16).astype(np.float64) - wide)[np.isfinite(wide)])
    norm = np.linalg.norm(finite)
    if norm and error / norm > ROUNDING:
        return f"underflow: float16 changes it by {error / norm:.2g} (relative L2) > 2^-11, values below 6.1e-5 lose bits"
    return None


def is_float32_weight(node) -> bool:
    return node.is_constant and np.asarray(node.attrs["value"]).dtype == np.float32


def value_problems(graph: Graph, samples: dict[str, np.ndarray], outputs: list | None = None) -> dict[str, str]:
    """Node name -> why its float32 outputs overflow float16 on the samples (whose graph outputs are
    appended to `outputs` when given)."""
    problems = {}
    for value, (low, high) in value_ranges(graph, samples, outputs).items():
        value_type = graph.type_of(value)
        if not (isinstance(value_type, TensorType) and value_type.dtype == "float32") or value.node in problems:
            continue
        peak = max((abs(x) for x in (low, high) if np.isfinite(x)), default=0.0)
        if peak > FP16_MAX:
            problems[value.node] = f"overflow: output {value.index} reaches |{peak:.4g}| > {FP16_MAX:g}"
    return problems


def plan_fp16(graph: Graph, options: dict, keep_weights_of_kept_nodes: bool) -> Fp16Plan:
    """The fp16 plan of `graph` checked on `options`' calibration data (or seeded random inputs).
    `keep_weights_of_kept_nodes`: a node that computes in float32 also reads its weights in float32
    (gpu); on cpu every node computes in float32 and only the weights' own range matters."""
    path, size = options.get("calibration"), options.get("calibration_size")
    samples, expected = calibration_samples(graph, path, size), []
    plan = Fp16Plan(value_problems(graph, samples, expected),
                    checked_on=f"{sample_count(samples)} sample(s) of {path}" if path
                    else f"{sample_count(samples)} seeded random normal input(s)", samples=samples, expected=expected)
    for node in graph.nodes():
        if is_float32_weight(node):
            problem = weight_problem(node.attrs["value"])
            if problem:
                plan.kept_weights[node.name] = problem
            else:
                plan.half_weights.add(node.name)
    if keep_weights_of_kept_nodes:
        for name in plan.kept_nodes:
            for value in graph.input_values(name):
                if value is not None and value.node in plan.half_weights:
                    plan.half_weights.discard(value.node)
                    plan.kept_weights[value.node] = f"read by {name!r}, which computes in float32"
        wide = float32_nodes(graph, plan)
        for name in sorted(plan.half_weights):
            if all(reader in wide for reader in graph.users(name)):
                plan.half_weights.discard(name)
                plan.kept_weights[name] = "read only by nodes that compute in float32"
    return plan


def float32_nodes(graph: Graph, plan: Fp16Plan) -> set[str]:
    """Nodes that compute in float32 under half storage: the kept nodes and every reader of a kept
    value or weight (a kernel's float inputs share one type; its results are narrowed again after it)."""
    kept = {*plan.kept_nodes, *plan.kept_weights}
    return set(plan.kept_nodes) | {reader for name in kept for reader in graph.users(name)}
