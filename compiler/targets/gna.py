"""The gna target: a quantized instruction stream for a GNA-class integer accelerator (docs/gna-isa.md),
run bit-exactly in software by runtime/gna.

The float graph is simplified by the shared passes, its value ranges are measured on calibration
data (compiler/codegen/gna/calibration.py), and it is lowered layer by layer to a quantized
Program (lowering.py, ops.py) that the encoder writes as model.gna. The artifact also holds
report.json: per layer the scale factors, PWL design, saturation count and SQNR (report.py).

Options: `calibration` (an .npz or a directory of NAME.npy; default: computed ranges from seeded
normal inputs), `gna_weights` "int16" (default) or "int8", `pwl_budget` (max relative PWL error,
default 0.01), `generation` "GNA2.0" (default) or "GNA3.0".
"""

from __future__ import annotations

import json

from compiler.artifact import Artifact
from compiler.codegen.gna.calibration import load_calibration, synthetic_samples, value_ranges
from compiler.codegen.gna.encoder import encode, gna_artifact
from compiler.codegen.gna.lowering import lower
from compiler.codegen.gna.ops import node_problem
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


def _quantizable(value_type) -> bool:
    return (isinstance(value_type, TensorType) and value_type.is_static and value_type.dtype == "float32"
            and 1 <= len(value_type.shape) <= 4)


@register_target
class GnaTarget(Target):
    name = "gna"
    description = "quantized int16/int8 instruction stream for a GNA-class accelerator, run bit-exactly in software"

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        inputs = [Unsupported(name, "graph input", f"type {value_type}: GNA inputs are static float32 tensors of "
                              "rank 1 to 4 (quantized to int16)")
                  for name in graph.inputs if not _quantizable(value_type := graph.node(name).outputs[0])]
        return inputs + [Unsupported(node.name, node.qualified_op, reason) for node in graph.nodes()
                         if not (node.is_input or node.is_constant) and (reason := self.node_problem(graph, node))]

    def node_problem(self, graph: Graph, node: Node) -> str | None:
        return node_problem(graph, node)

    def pipeline(self, options: dict) -> list[PassSpec]:
        return [
            PassSpec("fold-constants", why="shape computations and constant subgraphs need no layers"),
            PassSpec("cancel-transposes", why="transpose pairs cancel before layouts are chosen"),
            PassSpec("fold-reshapes", why="reshape chains become one element map"),
            PassSpec("fold-batch-norm", why="BatchNormalization and constant scale/shift fold into the weights of "
                     "the producing Gemm/MatMul/Conv; the rest become Mul+Add (DIAGONAL layers)"),
            *RefTarget().pipeline(options),
        ]

    def emit(self, graph: Graph, options: dict) -> Artifact:
        weights = options.get("gna_weights", "int16")
        generation = options.get("generation", "GNA2.0")
        if weights not in WEIGHT_TYPES or generation not in GENERATIONS:
            raise ValueError(f"gna options gna_weights={weights!r}, generation={generation!r}: use one of "
                             f"{', '.join(WEIGHT_TYPES)} and one of {', '.join(GENERATIONS)}")
        calibration = options.get("calibration")
        samples = load_calibration(calibration, graph) if calibration else synthetic_samples(graph)
        program, state = lower(graph, value_ranges(graph, samples), weights,
                               float(options.get("pwl_budget", DEFAULT_BUDGET)), generation)
        stream = encode(program)
        report = quantization_report(state, stream, samples)
        artifact = gna_artifact(stream, {k: str(v) for k, v in options.items()})
        artifact.files[REPORT_FILE] = json.dumps(report, indent=1, sort_keys=True).encode()
        return artifact
