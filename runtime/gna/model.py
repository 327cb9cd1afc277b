"""Runs a GNA stream in software: bit-exact (default) or in fp32 emulation (docs/gna-isa.md, 6 and 8)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from runtime.artifact_reader import ArtifactError
from runtime.gna.arithmetic import Exact, Fp32
from runtime.gna.format import STREAM_FILE, Section
from runtime.gna.isa import ACTIVATIONS
from runtime.gna.kernels import prepare
from runtime.gna.memory import Memory
from runtime.gna.reader import Layer, Stream, read_stream
from runtime.signature import InputError, TensorInfo, validate_inputs

MODES = {"exact": Exact, "fp32": Fp32}


@dataclass(frozen=True)
class LayerTrace:
    """One layer's output after a traced inference (raw values) and how many values it clamped
    (int32 accumulators plus int16 PWL outputs; None in fp32 mode, which clamps nothing)."""

    layer: Layer
    output: np.ndarray
    saturated: int | None


class GnaModel:
    """A loaded stream. `infer` takes and gives float32 (quantized and dequantized with each
    endpoint's scale factor); `infer_raw` takes int16 and gives the output buffers' values (int16
    or int32; float32 integer-domain values in fp32 mode). STATE persists until `reset_state()`."""

    def __init__(self, stream, mode: str = "exact"):
        if mode not in MODES:
            raise ValueError(f"unknown GNA execution mode {mode!r}; use one of {', '.join(MODES)}")
        self.stream = stream if isinstance(stream, Stream) else read_stream(stream)
        self.mode = mode
        self.arithmetic = MODES[mode]()
        self.memory = Memory(self.stream, exact=mode == "exact")
        self._layers = [prepare(layer, self.memory, self.arithmetic) for layer in self.stream.layers]
        self._inputs = [self._endpoint_view(e, (Section.WORK,)) for e in self.stream.inputs]
        self._outputs = [self._endpoint_view(e, ACTIVATIONS) for e in self.stream.outputs]
        self.inputs = [TensorInfo(e.name, "float32", e.shape) for e in self.stream.inputs]
        self.outputs = [TensorInfo(e.name, "float32", e.shape) for e in self.stream.outputs]
        self._lock = threading.Lock()

    def _endpoint_view(self, endpoint, sections) -> np.ndarray:
        """The endpoint's tensor inside its padded rows."""
        return self.memory.view(endpoint.operand(sections))[:, :endpoint.shape[-1]]

    def infer(self, feeds: Mapping[str, object]) -> dict:
        return dict(zip((o.name for o in self.outputs), self.run(validate_inputs(self.inputs, feeds))))

    def infer_raw(self, feeds: Mapping[str, object]) -> dict:
        infos = [TensorInfo(e.name, "int16", e.shape) for e in self.stream.inputs]
        values = validate_inputs(infos, feeds)
        return dict(zip((o.name for o in self.outputs), self.run(values, raw=True)))

    def trace(self, feeds: Mapping[str, object], raw: bool = False) -> tuple[dict, list[LayerTrace]]:
        """infer() (or infer_raw()) that also returns every layer's output and saturation count."""
        traces: list[LayerTrace] = []
        infos = [TensorInfo(e.name, "int16" if raw else "float32", e.shape) for e in self.stream.inputs]
        outputs = self.run(validate_inputs(infos, feeds), raw=raw, traces=traces)
        return dict(zip((o.name for o in self.outputs), outputs)), traces

    def run(self, values: list, raw: bool = False, traces: list | None = None) -> list:
        """Outputs for already-validated inputs in endpoint order."""
        with self._lock:
            self.memory.clear(Section.WORK)
            for endpoint, view, value in zip(self.stream.inputs, self._inputs, values):
                rows = np.asarray(value).reshape(view.shape)
                if not raw and np.isnan(rows).any():
                    raise InputError(f"input {endpoint.name!r} holds NaN, which has no int16 value; clean the input")
                view[...] = rows if raw else self.arithmetic.quantize(rows, endpoint.scale)
            for layer, run in zip(self.stream.layers, self._layers):
                if traces is None:
                    run()
                    continue
                self.arithmetic.saturated = 0 if self.mode == "exact" else None
                run()
                output = self.memory.view(layer.operands["output"]).copy()
                traces.append(LayerTrace(layer, output, self.arithmetic.saturated))
                self.arithmetic.saturated = None
            results = [view.reshape(e.shape).copy() for e, view in zip(self.stream.outputs, self._outputs)]
        if raw:
            return results
        return [(value.astype(np.float64) / np.float64(endpoint.scale)).astype(np.float32)
                for endpoint, value in zip(self.stream.outputs, results)]

    def reset_state(self) -> None:
        with self._lock:
            self.memory.clear(Section.STATE)


class GnaExecutor:
    """Runs gna artifacts for runtime.load: the stream is the payload file model.gna."""

    def __init__(self, files, mode: str = "exact"):
        self.model = GnaModel(files.read(STREAM_FILE), mode)
        for kind, infos in (("inputs", self.model.inputs), ("outputs", self.model.outputs)):
            declared = [(e["name"], e["type"]) for e in files.manifest[kind]]
            streamed = [(i.name, {"tensor": i.dtype, "shape": list(i.shape)}) for i in infos]
            if declared != streamed:
                raise ArtifactError(f"the manifest's {kind} {declared} do not match the stream's endpoints {streamed}; "
                                    "the artifact is damaged or mixed from two compiles: recompile it")

    def run(self, inputs: list) -> list:
        """Outputs for `inputs` (already validated against the signature by the caller)."""
        return self.model.run(inputs)
