"""The quantization report of a GNA compile: per layer its scale factors, PWL design, saturation
count (runtime.gna trace over the calibration samples) and SQNR of the value it computes against
the float graph (ref interpreter); per output, the SQNR of the whole model. JSON-ready, plus a table.
"""

from __future__ import annotations

import numpy as np

import runtime.gna
from compiler.codegen.gna.lowering import Lowering
from compiler.ir.graph import Value
from compiler.ops.interpreter import Interpreter


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """10 log10(signal power / error power); inf for an exact match."""
    reference = np.asarray(reference, np.float64)
    noise = float(np.sum((reference - np.asarray(approximation, np.float64)) ** 2))
    signal = float(np.sum(reference ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-300) / noise)


def _float_values(state: Lowering, values: list[Value], samples: dict) -> list[list[np.ndarray]]:
    probe = state.graph.copy()
    probe.outputs = [(f"probe{i}", value) for i, value in enumerate(values)]
    interpreter = Interpreter(probe)
    count = len(next(iter(samples.values())))
    return [interpreter.run({name: stack[i] for name, stack in samples.items()}) for i in range(count)]


def quantization_report(state: Lowering, stream: bytes, samples: dict) -> dict:
    """The report for a lowered and encoded graph, measured over `samples` (input name -> [count, *shape])."""
    model = runtime.gna.load(stream)
    notes = state.notes
    layer_values = {name: note["value"] for name, note in notes.items() if note["value"] is not None}
    values = list(dict.fromkeys([*layer_values.values(), *(v for _, v in state.graph.outputs)]))
    floats = _float_values(state, values, samples)
    saturated: dict[int, int] = {}
    errors: dict[str, list] = {}
    outputs: dict[str, list] = {}
    for index, reference in enumerate(floats):
        reference = dict(zip(values, reference))
        results, traces = model.trace({name: stack[index] for name, stack in samples.items()})
        for number, trace in enumerate(traces):
            saturated[number] = saturated.get(number, 0) + (trace.saturated or 0)
            value = layer_values.get(trace.layer.name)
            tensor = state.tensors.get(value)
            flat = trace.output.reshape(-1)
            if tensor is None or flat.size <= tensor.where.max():
                continue
            errors.setdefault(trace.layer.name, []).append(
                (reference[value].ravel(), flat[tensor.where].ravel() / tensor.scale))
        for name, value in state.graph.outputs:
            outputs.setdefault(name, []).append((reference[value].ravel(), results[name].ravel()))
    layers = []
    for number, layer in enumerate(model.stream.layers):
        note = notes.get(layer.name, {})
        pairs = errors.get(layer.name)
        layers.append({"index": number, "name": layer.name, "op": layer.op.name,
                       "in_scale": note.get("in_scale"), "weight_scale": note.get("weight_scale"),
                       "out_scale": layer.out_scale or None, "pwl": note.get("pwl"),
                       "saturated": saturated.get(number, 0),
                       "sqnr_db": None if not pairs else sqnr_db(*(np.concatenate(p) for p in zip(*pairs)))})
    return {"samples": len(floats), "weights": state.weights, "pwl_budget": state.budget, "layers": layers,
            "outputs": {name: sqnr_db(*(np.concatenate(p) for p in zip(*pairs))) for name, pairs in outputs.items()}}


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def format_report(report: dict) -> str:
    """The report as a text table."""
    header = ("#", "layer", "op", "in scale", "w scale", "out scale", "pwl", "segs", "pwl err", "saturated", "SQNR dB")
    rows = [header]
    for layer in report["layers"]:
        pwl = layer["pwl"] or {}
        rows.append((str(layer["index"]), layer["name"], layer["op"], _number(layer["in_scale"]),
                     _number(layer["weight_scale"]), _number(layer["out_scale"]), pwl.get("function", "-"),
                     _number(pwl.get("segments")), _number(pwl.get("max_error"), 3), str(layer["saturated"]),
                     _number(layer["sqnr_db"], 3)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"weights {report['weights']}, PWL budget {report['pwl_budget']:.3g}, {report['samples']} samples; "
                 "output SQNR vs fp32: " + ", ".join(f"{name} {db:.1f} dB" for name, db in report["outputs"].items()))
    return "\n".join(lines)
