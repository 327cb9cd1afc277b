"""compile(precision="int8"): prepare the float graph, calibrate, quantize to QDQ, report.

Options (compile() keywords; CLI flags in compiler/cli.py): `calibration` (an .npz or a directory
of NAME.npy; without it, seeded random inputs and a warning that their ranges are a guess),
`calibration_size` (the first N samples), `calibration_method` (minmax, percentile, entropy,
mse; default minmax, as ONNX Runtime's), `calibration_percentile` (default 99.999), `ignore`
(node names kept float). The QDQ graph is what the target then compiles: every target runs it as
a float graph, and the cpu target fuses its patterns into int8 kernels.
"""

from __future__ import annotations

import json
import logging

from compiler.calibration_data import CalibrationError, calibration_samples, sample_count
from compiler.ir.graph import Graph, Value
from compiler.passes.manager import PassContext, PassManager, PassSpec
from compiler.passes.quantize_static import QuantizeStatic, plan_quantization
from compiler.quantization.probe import Probe
from compiler.quantization.ranges import DEFAULT_PERCENTILE, check_method, collect_ranges
from compiler.quantization.report import float_values, quantization_report

log = logging.getLogger("kiln.quantization")

TARGETS = ("ref", "cpu", "gpu")

# Quantize what the target will compute: BatchNormalization folded into the Conv weights first (as
# ORT's quantization pre-processing does), so its weights are quantized once, folded.
PREPARE = [
    PassSpec("eliminate-identity", why="Identity and inference Dropout only rename values"),
    PassSpec("fold-constants", why="shape computations and weight arithmetic become the constants quantized"),
    PassSpec("fold-batch-norm", why="BatchNormalization folds into the Conv/Gemm weights before they are quantized"),
    PassSpec("eliminate-dead-code", why="drop what folding left unread"),
    PassSpec("infer-types", why="calibration reads static shapes"),
]


class QuantizationTargetError(ValueError):
    """precision int8 asked for a target that does not take it."""


def quantize_model(graph: Graph, target: str, options: dict) -> tuple[Graph, bytes]:
    """(QDQ graph, report.json bytes) for the specialised float `graph`."""
    if target not in TARGETS:
        raise QuantizationTargetError(f"precision 'int8' is compiled for the targets {list(TARGETS)}, not {target!r}")
    method = options.get("calibration_method") or "minmax"
    percentile = options.get("calibration_percentile") or DEFAULT_PERCENTILE
    ignore = tuple(options.get("ignore") or ())
    check_method(method, percentile)
    types = {name: graph.type_of(Value(name)) for name in graph.inputs}
    dynamic = {name: value_type.shape for name, value_type in types.items() if not value_type.is_static}
    if dynamic:
        raise CalibrationError(f"precision int8 measures ranges on samples of static shape; input(s) {dynamic} have "
                               "symbolic dims: give static shapes (shapes= or --shape NAME=D0,D1,...)")
    graph = PassManager(PREPARE).run(graph, PassContext(target=target, options=dict(options)))
    plan = plan_quantization(graph, ignore)
    path = options.get("calibration")
    batched = tuple((options.get("dynamic_batch") or {}).get("inputs", ()))  # compiled at the bound: regroup
    stacks = calibration_samples(graph, path, options.get("calibration_size"), regroup=batched)
    if not path:
        log.warning("int8: no calibration data given: the ranges come from %d seeded random inputs and are a guess; "
                    "give calibration=PATH (--calibration) with real inputs", sample_count(stacks))
    probe = Probe(graph, float_values(graph, plan))  # one compile of the float graph: calibration and report
    ranges = collect_ranges(graph, plan.measured(), stacks, method, percentile, probe)
    quantize = QuantizeStatic({graph.value_name(value): bounds for value, bounds in ranges.items()}, ignore)
    quantized = quantize(graph.copy(), PassContext(target=target, options=dict(options)))
    about = {"target": target, "ignored": list(ignore),
             "calibration": {"source": str(path) if path else "seeded random inputs", "samples": sample_count(stacks),
                             "method": method, **({"percentile": percentile} if method == "percentile" else {})}}
    report = quantization_report(graph, quantized, plan, stacks, about, probe)
    return quantized, json.dumps(report, indent=1).encode()
