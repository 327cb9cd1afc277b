"""The int8 report: how much error each quantized layer adds, worst first, and the output error.

Both graphs run over the calibration samples. Per quantized layer output (paired with Quantize/
DequantizeLinear or kept float) and quantized graph input, two signal-to-quantization-noise ratios
in dB (10 log10 of signal power over error power, summed over all samples; null when exact):
- `local_sqnr_db`: the layer's own error. Beside each quantized layer the QDQ graph gets a float
  twin: the same op with the original float weights (and the removed Relu/Clip after it), reading
  the same dequantized inputs. The dequantized output against the twin is the error of this
  layer's weights and output scale alone, so the layer that breaks accuracy ranks first, not the
  layers after it that only inherit its error. (A value no quantized op produces, such as a graph
  input, is compared with itself before its QuantizeLinear.)
- `sqnr_db`: the accumulated error: the dequantized output against the fp32 graph's value.
Graph outputs: max abs error, SNR (dB) and, for [batch, classes] outputs, top-1 agreement.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.passes.quantize_static import Plan, QuantizedTensor
from compiler.quantization.probe import Probe, samples

SHOWN = 15  # layers printed by format_report; report.json holds them all


class _Power:
    """Signal and error power summed over samples."""

    def __init__(self):
        self.signal = self.noise = 0.0
        self.max_abs = 0.0

    def add(self, reference: np.ndarray, measured: np.ndarray) -> None:
        reference, error = np.asarray(reference, np.float64), np.asarray(measured, np.float64) - reference
        self.signal += float(np.sum(reference ** 2))
        self.noise += float(np.sum(error ** 2))
        self.max_abs = max(self.max_abs, float(np.abs(error).max(initial=0.0)))

    def db(self) -> float | None:
        """None when exact; an error on an all-zero signal gives a finite, very low value (JSON has no -inf)."""
        if self.noise == 0.0:
            return None
        return 10 * math.log10(max(self.signal, 1e-300) / self.noise)


def dequantized(graph: Graph, source: Value) -> Value:
    """The DequantizeLinear output that readers of `source` read in the quantized graph."""
    for reader, _ in graph.uses(source):
        if graph.node(reader).op_type == "QuantizeLinear":
            return Value(graph.uses(Value(reader))[0][0])
    raise KeyError(f"value {graph.value_name(source)!r} has no QuantizeLinear reader")


def _parameters(graph: Graph, source: Value) -> tuple[float, int]:
    reader = next(r for r, _ in graph.uses(source) if graph.node(r).op_type == "QuantizeLinear")
    _, scale, zero_point = graph.input_values(reader)
    return float(graph.constant_value(scale)), int(graph.constant_value(zero_point))


def _clone(probe: Graph, float_graph: Graph, name: str, first: Value | None) -> Value:
    """Node `name` of the float graph added to `probe` as `name`_float: constant inputs from the float
    graph, input 0 from `first` when given, other inputs as the same node of `probe` reads them."""
    node = float_graph.node(name)
    inputs = []
    for index, value in enumerate(float_graph.input_values(node)):
        constant = float_graph.constant_value(value)
        if constant is not None:
            inputs.append(probe.add_constant(constant, f"{name}_float_{index}"))
        elif index == 0 and first is not None:
            inputs.append(first)
        else:
            inputs.append(None if value is None else probe.input_values(name)[index])
    version = probe.node(name).version if name in probe else node.version  # as quantized (MaxPool: 12)
    twin = probe.add_node(node.op_type, inputs, node.attrs, domain=node.domain, version=version,
                          outputs=[node.outputs[0]], name=f"{name}_float")
    return Value(twin.name)


def _twin(probe: Graph, float_graph: Graph, tensor: QuantizedTensor, plan: Plan) -> Value:
    """The float recomputation of `tensor` from the inputs its layer reads in the quantized graph."""
    if tensor.layer not in plan.nodes:
        return tensor.source
    value = _clone(probe, float_graph, tensor.layer, None)
    if tensor.observed.node != tensor.layer:  # the Relu/Clip the quantizer removed
        value = _clone(probe, float_graph, tensor.observed.node, value)
    return value


def float_values(float_graph: Graph, plan: Plan) -> list[Value]:
    """What the report reads from the float graph (a calibration probe reading these serves both)."""
    return list(dict.fromkeys([t.observed for t in plan.tensors.values()] + [v for _, v in float_graph.outputs]))


def quantization_report(float_graph: Graph, quantized: Graph, plan: Plan, stacks: dict[str, np.ndarray],
                        about: dict, float_probe: Probe | None = None) -> dict:
    """The report as JSON-ready data; `about` (calibration source, method, ...) is stored as given.
    `float_probe` runs `float_graph` reading at least `float_values(float_graph, plan)`."""
    tensors = list(plan.tensors.values())
    probe_graph = quantized.copy()
    twins = [_twin(probe_graph, float_graph, tensor, plan) for tensor in tensors]
    measured = [dequantized(quantized, t.source) if t.paired else t.source for t in tensors]
    float_probe = float_probe or Probe(float_graph, float_values(float_graph, plan))
    quantized_probe = Probe(probe_graph, measured + twins + [value for _, value in quantized.outputs])
    local, accumulated = [_Power() for _ in tensors], [_Power() for _ in tensors]
    outputs = list(zip(float_graph.outputs, quantized.outputs))
    output_error = [_Power() for _ in outputs]
    agree = [0] * len(outputs)
    for feeds in samples(stacks):
        reference, results = float_probe.run(feeds), quantized_probe.run(feeds)
        for index, (tensor, value, twin) in enumerate(zip(tensors, measured, twins)):
            accumulated[index].add(reference[tensor.observed], results[value])
            local[index].add(results[twin], results[value])
        for index, ((_, expected), (_, got)) in enumerate(outputs):
            output_error[index].add(reference[expected], results[got])
            if _class_vector(np.shape(reference[expected])):
                agree[index] += int(np.sum(np.argmax(reference[expected], -1) == np.argmax(results[got], -1)))
    runs = len(next(iter(stacks.values())))
    layers = []
    for tensor, own, total in zip(tensors, local, accumulated):
        scale, zero_point = _parameters(quantized, tensor.source) if tensor.paired else (None, None)
        op = float_graph.node(tensor.layer).op_type
        if tensor.observed.node != tensor.layer:
            op += "+" + float_graph.node(tensor.observed.node).op_type
        layers.append({"layer": tensor.layer, "op": op, "value": float_graph.value_name(tensor.observed),
                       "local_sqnr_db": own.db(), "sqnr_db": total.db(), "scale": scale, "zero_point": zero_point})
    layers.sort(key=lambda entry: (_rank(entry["local_sqnr_db"]), _rank(entry["sqnr_db"])))
    results = []
    for (name, value), error, agreed in zip(float_graph.outputs, output_error, agree):
        entry = {"output": name, "max_abs_error": error.max_abs, "snr_db": error.db()}
        shape = float_graph.type_of(value).shape
        if _class_vector(shape):
            entry["top1_agreement"] = agreed / (runs * shape[0])
        results.append(entry)
    return {"kind": "int8", **about, "quantized_nodes": len(plan.nodes), "layers": layers, "outputs": results}


def _class_vector(shape) -> bool:
    """A [batch, classes] output: top-1 agreement applies."""
    return len(shape) == 2 and shape[-1] > 1


def _rank(db: float | None) -> float:
    return math.inf if db is None else db


def _db(value: float | None) -> str:
    return "exact" if value is None else f"{value:.1f}"


def format_report(report: dict) -> str:
    """The printed table: the worst layers first, then the outputs."""
    calibration = report.get("calibration", {})
    lines = [f"int8: {report['quantized_nodes']} nodes quantized; ranges by {calibration.get('method')} over "
             f"{calibration.get('samples')} sample(s) of {calibration.get('source')}",
             f"{'layer':32} {'op':18} {'local SQNR dB':>13} {'SQNR dB':>9} {'scale':>11} {'zp':>4}"]
    for entry in report["layers"][:SHOWN]:
        scale = "float" if entry["scale"] is None else f"{entry['scale']:.4g}"
        zero_point = "" if entry["zero_point"] is None else entry["zero_point"]
        lines.append(f"{entry['layer'][:32]:32} {entry['op'][:18]:18} {_db(entry['local_sqnr_db']):>13} "
                     f"{_db(entry['sqnr_db']):>9} {scale:>11} {zero_point:>4}")
    if len(report["layers"]) > SHOWN:
        lines.append(f"... {len(report['layers']) - SHOWN} more in report.json")
    for entry in report["outputs"]:
        top1 = f", top-1 agreement {entry['top1_agreement']:.1%}" if "top1_agreement" in entry else ""
        snr = "exact" if entry["snr_db"] is None else f"SNR {entry['snr_db']:.1f} dB"
        lines.append(f"output {entry['output']}: max abs error {entry['max_abs_error']:.4g}, {snr}{top1}")
    return "\n".join(lines)
