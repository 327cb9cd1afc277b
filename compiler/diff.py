"""Layer-by-layer diff: which node made the compiled model's output wrong.

`diff_model(model, target, feeds, reference="ort")` compiles a debug build of the model (the
target's own pipeline, then every intermediate tensor made a graph output, so each kernel's
result comes back) and runs the reference on the same inputs with every ONNX node output exposed:
ONNX Runtime with its graph optimizations off, or Kiln's ref target on the unoptimized graph.
Values pair up by tensor name: passes keep the ONNX name of the value a node (fused or not)
finally produces. Each ONNX node's outputs get a row, in the model's order: the max absolute
error, the error relative to the reference's largest magnitude, and the kernel that computed it
(a fused kernel lists its original nodes). Outputs a fused kernel keeps in registers, or that
folding removed, have no row values. The first row over tolerance names the culprit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import numpy as np
import onnx

from compiler.driver import optimize, to_graph
from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassSpec
from compiler.targets.base import get_target

REFERENCES = ("ort", "ref")


@dataclass
class NodeDiff:
    """One ONNX node output compared; `max_abs`/`max_rel` are None when it has no counterpart."""

    node: str
    op_type: str
    output: str
    shape: list | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    within_tolerance: bool | None = None
    kernel: str | None = None
    kernel_nodes: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class DiffReport:
    target: str
    reference: str
    rtol: float
    atol: float
    rows: list[NodeDiff]

    @property
    def first_mismatch(self) -> NodeDiff | None:
        return next((row for row in self.rows if row.within_tolerance is False), None)

    def to_dict(self) -> dict:
        first = self.first_mismatch
        return {"target": self.target, "reference": self.reference, "rtol": self.rtol, "atol": self.atol,
                "first_mismatch": None if first is None else asdict(first), "rows": [asdict(r) for r in self.rows]}


def expose_intermediates(graph: Graph) -> Graph:
    """A copy of `graph` whose every tensor a node computes is also a graph output, under its name."""
    exposed = graph.copy()
    taken = {name for name, _ in exposed.outputs}
    for node in exposed.topological_order():
        if node.op_type in ("Input", "Constant"):
            continue
        for index, (name, value_type) in enumerate(zip(node.output_names, node.outputs)):
            if isinstance(value_type, TensorType) and name not in taken:
                exposed.add_output(name, Value(node.name, index))
                taken.add(name)
    return exposed


def _run_debug_build(graph: Graph, target: str, feeds: Mapping[str, np.ndarray], options: dict) -> dict:
    import runtime

    artifact = get_target(target).emit(expose_intermediates(graph), options)
    return runtime.load(artifact).infer(feeds)


def _onnxruntime_values(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict:
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    declared = {output.name for output in exposed.graph.output}
    for node in exposed.graph.node:
        exposed.graph.output.extend(onnx.ValueInfoProto(name=name) for name in node.output
                                    if name and name not in declared)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds))))


def _kernels_by_original_node(graph: Graph) -> dict[str, tuple[str, list[str]]]:
    """Original node name -> (the kernel computing it, that kernel's original nodes)."""
    kernels = {}
    for node in graph.nodes():
        members = list(node.attrs.get("fused_nodes", [node.name]))
        for member in members:
            kernels[member] = (node.name, members)
    return kernels


def _compare(ours: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> tuple[float, float, bool]:
    ours, expected = np.asarray(ours), np.asarray(expected)
    if expected.dtype.kind not in "biuf" or ours.shape != expected.shape:
        equal = ours.shape == expected.shape and np.array_equal(ours, expected)
        return (0.0, 0.0, True) if equal else (float("inf"), float("inf"), False)
    difference = np.abs(ours.astype(np.float64) - expected.astype(np.float64))
    max_abs = float(np.nanmax(difference, initial=0.0))
    scale = float(np.max(np.abs(expected), initial=0.0))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    same_nans = np.array_equal(np.isnan(ours), np.isnan(expected))
    return max_abs, max_rel, same_nans and bool(np.allclose(ours, expected, rtol=rtol, atol=atol, equal_nan=True))


def diff_model(model, target: str, feeds: Mapping[str, np.ndarray], *, reference: str = "ort",
               rtol: float = 1e-3, atol: float = 1e-4, pipeline: Iterable[PassSpec] | None = None,
               disable: Iterable[str] = (), **options) -> DiffReport:
    """Compare every node's output of `model` compiled for `target` with `reference` on `feeds`."""
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(model)
    compiled = optimize(proto, target, pipeline=pipeline, disable=disable, **options)
    ours = _run_debug_build(compiled, target, feeds, options)
    if reference == "ort":
        expected = _onnxruntime_values(proto, feeds)
    else:
        expected = _run_debug_build(to_graph(proto), "ref", feeds, {})
    kernels = _kernels_by_original_node(compiled)
    rows = []
    for index, node in enumerate(proto.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        for output in (o for o in node.output if o):
            row = NodeDiff(name, node.op_type, output)
            row.kernel, row.kernel_nodes = kernels.get(name, (None, []))
            if output not in expected:
                row.note = f"{reference} did not return this value"
            elif output not in ours:
                row.note = ("computed inside kernel " + row.kernel) if row.kernel else "folded or removed by the passes"
            else:
                row.shape = list(np.shape(ours[output]))
                row.max_abs, row.max_rel, row.within_tolerance = _compare(ours[output], expected[output], rtol, atol)
            rows.append(row)
    return DiffReport(target, reference, rtol, atol, rows)


def report_lines(report: DiffReport) -> list[str]:
    """The report as aligned text lines, mismatches marked with '!'."""
    lines = [f"kiln diff: target {report.target} against {report.reference} "
             f"(rtol {report.rtol:g}, atol {report.atol:g})",
             f"  {'':1} {'node':28} {'op':18} {'output':28} {'shape':16} {'max abs':>10} {'max rel':>10}  kernel"]
    for row in report.rows:
        mark = "!" if row.within_tolerance is False else " "
        shape = "x".join(map(str, row.shape)) if row.shape is not None else "-"
        numbers = (f"{row.max_abs:10.3g} {row.max_rel:10.3g}" if row.max_abs is not None else f"{'-':>10} {'-':>10}")
        kernel = row.note or (row.kernel if row.kernel_nodes == [row.node] else
                              f"{row.kernel} [{', '.join(row.kernel_nodes)}]")
        lines.append(f"  {mark} {row.node:28} {row.op_type:18} {row.output:28} {shape:16} {numbers}  {kernel}")
    first = report.first_mismatch
    if first is None:
        lines.append("every compared output is within tolerance")
    else:
        members = f" (kernel {first.kernel} computes {', '.join(first.kernel_nodes)})" if len(first.kernel_nodes) > 1 \
            else ""
        lines.append(f"first output over tolerance: {first.output!r} of node {first.node!r} ({first.op_type}){members}: "
                     f"max abs {first.max_abs:.3g}, max rel {first.max_rel:.3g}")
    return lines
