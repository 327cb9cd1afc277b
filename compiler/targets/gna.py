"""The gna target: a quantized instruction stream for a GNA-class integer accelerator (docs/gna-isa.md),
run bit-exactly in software by runtime/gna.

The float graph is simplified by the shared passes, its value ranges are measured on calibration
data (compiler/calibration_data.py), and it is lowered layer by layer to a quantized
Program (lowering.py, ops.py) that the encoder writes as model.gna. The artifact also holds
report.json: per layer the scale factors, PWL design, saturation count and SQNR (report.py).

Options: `calibration` (an .npz or a directory of NAME.npy; default: computed ranges from seeded
normal inputs), `calibration_size` (the first N samples), `gna_weights` "int16" (default) or "int8", `pwl_budget` (max relative PWL error,
default 0.01), `generation` "GNA2.0" (default) or "GNA3.0", `fallback` "cpu": what the GNA cannot run goes to
the cpu target in one split artifact (partition.py).
"""

from __future__ import annotations

import json

from compiler.artifact import Artifact
from compiler.calibration_data import calibration_samples, sample_values, synthetic_samples, value_ranges
from compiler.codegen.gna.encoder import GnaEncodeError, encode, gna_artifact
from compiler.codegen.gna.lowering import GnaLoweringError, lower
from compiler.codegen.gna.ops import node_problem
from compiler.codegen.gna.partition import assign
from compiler.partition import hetero_artifact
from compiler.codegen.gna.pwl import DEFAULT_BUDGET
from compiler.codegen.gna.quantize import WEIGHT_TYPES
from compiler.codegen.gna.report import quantization_report
from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType
from compiler.passes.manager import PassSpec
from compiler.targets.base import Target, Unsupported, register_target
from compiler.targets.ref import RefTarget

REPORT_FILE = "report.json"
GENERATIONS = ("GNA2.0", "GNA3.0")


def _input_problem(value_type) -> str:
    if isinstance(value_type, TensorType) and not value_type.is_static:
        return f"type {value_type} has dynamic dims: GNA buffers have fixed sizes; compile with static input " \
               "shapes (--shape NAME=D0,D1,... or shapes={...})"
    return f"type {value_type}: GNA inputs are static float32 tensors of rank 1 to 4 (quantized to int16)"


def _quantizable(value_type) -> bool:
    return (isinstance(value_type, TensorType) and value_type.is_static and value_type.dtype == "float32"
            and 1 <= len(value_type.shape) <= 4)


@register_target
class GnaTarget(Target):
    name = "gna"
    description = "quantized int16/int8 instruction stream for a GNA-class accelerator, run bit-exactly in software"

    options: dict = {}

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        """Nothing with `fallback="cpu"` (the cpu runs what the GNA cannot); otherwise `problems`."""
        return [] if self.options.get("fallback") else self.problems(graph)

    def problems(self, graph: Graph) -> list[Unsupported]:
        """Every input and node the GNA cannot take, with the reason; when each passes on its own, a trial
        lowering and encoding (computed ranges from one sample) finds what only the whole program shows:
        layouts, and the ISA's limits on the layers each node becomes."""
        inputs = [Unsupported(name, "graph input", _input_problem(value_type))
                  for name in graph.inputs if not _quantizable(value_type := graph.node(name).outputs[0])]
        problems = inputs + self.node_problems(graph)
        return problems or self._emit_problems(graph)

    def _emit_problems(self, graph: Graph) -> list[Unsupported]:
        weights, generation = self._choices(self.options)
        samples = synthetic_samples(graph, count=1)
        state = None
        try:
            program, state = lower(graph, value_ranges(graph, samples), weights,
                                   float(self.options.get("pwl_budget", DEFAULT_BUDGET)), generation, samples)
            encode(program)
        except GnaLoweringError as error:
            return [Unsupported(error.node.name, error.node.qualified_op, str(error))]
        except GnaEncodeError as error:
            origin = state.origins[error.layer] if error.layer is not None else None
            if origin is None or origin not in graph:
                return [Unsupported(origin or graph.name, "program", str(error))]
            return [Unsupported(origin, graph.node(origin).qualified_op, str(error))]
        return []

    def node_problem(self, graph: Graph, node: Node) -> str | None:
        return node_problem(graph, node, self.options.get("generation", "GNA2.0"))

    def pipeline(self, options: dict) -> list[PassSpec]:
        self.options = dict(options)
        return [
            PassSpec("fold-constants", why="shape computations and constant subgraphs need no layers"),
            PassSpec("cancel-transposes", why="transpose pairs cancel before layouts are chosen"),
            PassSpec("fold-reshapes", why="reshape chains become one element map"),
            PassSpec("fold-batch-norm", why="BatchNormalization and constant scale/shift fold into the weights of "
                     "the producing Gemm/MatMul/Conv; the rest become Mul+Add (DIAGONAL layers)"),
            *RefTarget().pipeline(options),
        ]

    @staticmethod
    def _choices(options: dict) -> tuple[str, str]:
        weights = options.get("gna_weights", "int16")
        generation = options.get("generation", "GNA2.0")
        fallback = options.get("fallback")
        if weights not in WEIGHT_TYPES or generation not in GENERATIONS or fallback not in (None, "cpu"):
            raise ValueError(f"gna options gna_weights={weights!r}, generation={generation!r}, fallback={fallback!r}: "
                             f"use one of {', '.join(WEIGHT_TYPES)}, one of {', '.join(GENERATIONS)} and fallback "
                             "'cpu' or none")
        return weights, generation

    def emit(self, graph: Graph, options: dict) -> Artifact:
        self._choices(options)
        samples = calibration_samples(graph, options.get("calibration"), options.get("calibration_size"))
        if options.get("fallback"):
            parts = assign(graph, self.problems)
            if any(part.device != "gna" for part in parts):
                return hetero_artifact(graph, parts, lambda part, sub: self._emit_part(graph, part, sub, options,
                                                                                       samples))
        return self._emit(graph, options, samples)

    def _emit_part(self, graph: Graph, part, sub: Graph, options: dict, samples: dict) -> Artifact:
        """A part of a fallback compile: gna parts calibrated with the float values at their inputs."""
        options = {k: v for k, v in options.items() if k not in ("fallback", "calibration", "calibration_size")}
        if part.device == "cpu":
            from compiler.driver import compile

            return compile(sub, "cpu")
        inputs = sample_values(graph, list(part.inputs), samples)
        return self._emit(sub, options, {name: stack for name, stack in zip(sub.inputs, inputs)})

    def _emit(self, graph: Graph, options: dict, samples: dict) -> Artifact:
        weights, generation = self._choices(options)
        program, state = lower(graph, value_ranges(graph, samples), weights,
                               float(options.get("pwl_budget", DEFAULT_BUDGET)), generation, samples)
        stream = encode(program)
        report = quantization_report(state, stream, samples)
        artifact = gna_artifact(stream, {k: str(v) for k, v in options.items()})
        artifact.files[REPORT_FILE] = json.dumps(report, indent=1, sort_keys=True).encode()
        return artifact
