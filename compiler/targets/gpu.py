"""The gpu target: OpenCL C kernels rendered from jinja2 templates, one program per model.

The artifact holds model.cl (the program), weights.bin (64-byte aligned) and, in the manifest,
the launch plan (kernels in order with their argument buffers and NDRanges) and the buffer
plan (compiler/codegen/memory_plan.py). runtime/gpu.py builds the program through pyopencl on
the device chosen at load and runs the plan.

float16 and bfloat16 model tensors are stored as 16 bits and computed in float on any device,
rounded per node as the cpu target's widening does. Options: `precision` "fp32" (default) or
"fp16" (aliases "float32", "float16"; fp16: every float tensor stored as half and computed in float,
except the nodes and weights the fp16 check (compiler/precision/fp16_check.py) finds overflowing
on `calibration` data or seeded random inputs, which stay float32 and are listed in report.json;
the device must report cl_khr_fp16, checked at load, and at compile time when `device` is given;
float64 tensors likewise need cl_khr_fp64); `device` names the device whose limits (work-group size, local memory) the
launch planner uses, as runtime.load's `device` does; without it the planner
assumes a conservative OpenCL 1.2 GPU.
"""

from __future__ import annotations

import functools

from compiler.artifact import Artifact, compiler_version
from compiler.codegen.memory_plan import plan_memory
from compiler.codegen.opencl.dialect import STORAGE_TYPES, OpenCLDialect
from compiler.codegen.opencl.kernels.registry import gpu_kernel_for, in_place_input
from compiler.codegen.opencl.launch import DeviceLimits, LaunchPlanner
from compiler.codegen.opencl.program import build_program
from compiler.codegen.opencl.steps import inner_types
from compiler.dynamic_batch import BatchBounds, batch_factors
from compiler.dynamic_extent import ExtentBounds, extent_axes, extent_rows, output_axes
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassSpec
from compiler.precision.fp16_check import plan_fp16
from compiler.precision.options import precision_of, precision_problem
from compiler.precision.fp16_report import add_report
from compiler.precision.half_storage import stored_in_half
from compiler.targets.base import Target, Unsupported, boundary_types, register_target
from compiler.targets.graph_passes import shared_passes
from compiler.targets.ref import RefTarget, signature

HALF, DOUBLE = "cl_khr_fp16", "cl_khr_fp64"


def _storage_problem(value_type, double: bool = True) -> str | None:
    """Why a value cannot be stored; `double`: whether the device (when named) has cl_khr_fp64."""
    if not isinstance(value_type, TensorType):
        return f"{value_type} values (sequences/optionals) are not compiled by the gpu target"
    if not value_type.is_static:
        return f"shape {value_type} is not static: give input shapes, each dim a size or LOW..HIGH bounds"
    if value_type.dtype not in STORAGE_TYPES:
        return f"dtype {value_type.dtype} is not compiled by the gpu target"
    if value_type.dtype == "float64" and not double:
        return f"float64 tensors need {DOUBLE}, which the device named at compile time does not report: " \
               "convert the model to float32 or compile for another device"
    return None


def _node_problem(graph: Graph, node: Node, double: bool = True) -> str | None:
    if graph.subgraphs(node):
        return "control flow with subgraphs is not compiled by the gpu target"
    for value_type in [t for t in graph.input_types(node) if t is not None] + list(node.outputs) + \
            inner_types(graph, node):
        problem = _storage_problem(value_type, double)
        if problem:
            return problem
    spec = gpu_kernel_for(node)
    if spec is None:
        return f"no gpu kernel for {node.qualified_op}"
    return spec.check(graph, node)


def _extensions(dialect: OpenCLDialect, precision: str) -> list[str]:
    """What the device must report: the program's (double) and, for precision 'fp16', cl_khr_fp16,
    which that option promises to use even though half storage itself needs no extension."""
    return sorted({*dialect.extensions(), *([HALF] if precision == "fp16" else [])})


@functools.lru_cache(maxsize=8)
def _device_limits(device) -> DeviceLimits:
    """Queried once per device selector: unsupported() asks for every node."""
    return DeviceLimits.query(device)


def _buffer_entries(graph: Graph, values: list[Value]) -> list[dict]:
    return [{"dtype": graph.type_of(v).dtype, "shape": list(graph.type_of(v).shape)} for v in values]


@register_target
class GpuTarget(Target):
    name = "gpu"
    description = "OpenCL C for any OpenCL 1.2 device (GPUs; PoCL on the CPU), run through pyopencl"

    def __init__(self):
        self.options: dict = {}

    @property
    def precision(self) -> str:
        return self.options.get("precision", "fp32")

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        problems = self._option_problems()
        for name, value_type in boundary_types(graph):
            problem = _storage_problem(value_type, self._device_has(DOUBLE))
            if problem:
                problems.append(Unsupported(name, "graph input/output", problem))
        return problems + self.node_problems(graph)

    def _option_problems(self) -> list[Unsupported]:
        problem = precision_problem(self.options)
        if problem:
            return [Unsupported("(options)", "precision", problem)]
        if precision_of(self.options) == "fp16" and not self._device_has(HALF):
            return [Unsupported("(options)", "precision", f"precision {self.precision!r} needs {HALF}, which device "
                                f"{self._limits().name!r} does not report; compile with precision='fp32'")]
        return []

    def _limits(self) -> DeviceLimits:
        """The limits of the device named by the `device` option, or the default profile."""
        device = self.options.get("device")
        return DeviceLimits() if device is None else _device_limits(device)

    def _device_has(self, extension: str) -> bool:
        """Whether the device named at compile time reports `extension` (True when none is named: the
        runtime checks the device it loads on)."""
        return self.options.get("device") is None or extension in self._limits().extensions

    def node_problem(self, graph: Graph, node: Node) -> str | None:
        return _node_problem(graph, node, self._device_has(DOUBLE))

    def pipeline(self, options: dict) -> list[PassSpec]:
        """QDQ layers as QLinearConv/QLinearMatMul (qdq-to-qlinear), then the cpu target's graph passes
        that fit the gpu kernels: BatchNormalization folding and the fusions (kiln::FusedConv/
        FusedGemm/FusedMatMul epilogues and kiln::FusedElementwise, each with a gpu kernel), then
        widening of half-float nodes whose kernel takes float32 only. The options are kept:
        unsupported() checks the precision and device asked for."""
        self.options = dict(options)
        p = shared_passes("gpu", kernel="GEMM kernel")
        widen = PassSpec("widen-half-floats", why="float16/bfloat16 ops whose kernel takes float32 only compute "
                         "in float32 between Casts")
        int8 = PassSpec("qdq-to-qlinear", why="DequantizeLinear -> Conv/MatMul/Gemm [-> Relu/Clip] -> QuantizeLinear "
                        "become QLinearConv/QLinearMatMul, int8 kernels (before fold-constants dequantizes the weights)")
        return [int8, p["fold"], p["flex"], p["expand"], p["unroll"], p["select"], p["fold"], p["expand"], p["merge"],
                p["masks"], p["batch_norm"], p["epilogues"], p["fuse"], widen, *RefTarget().pipeline(options)]

    def emit(self, graph: Graph, options: dict) -> Artifact:
        precision = options.get("precision", "fp32")
        device = options.get("device")
        limits = _device_limits(device) if device is not None else DeviceLimits()
        fp16 = plan_fp16(graph, options, keep_weights_of_kept_nodes=True) if precision_of(options) == "fp16" else None
        stored = stored_in_half(graph, fp16) if fp16 else graph
        plan = plan_memory(stored, in_place_input)
        dialect = OpenCLDialect()
        bounds = BatchBounds.from_options(options)
        factors = batch_factors(stored, bounds) if bounds else {}
        extent = ExtentBounds.from_options(options)
        axes = extent_axes(stored, extent) if extent else {}
        program = build_program(stored, plan, dialect, LaunchPlanner(limits), {v.node for v in factors},
                                bounds.chunk if bounds else 1, extent_rows(stored, axes, extent) if extent else None)
        manifest = {
            "target": self.name, "compiler_version": compiler_version(),
            "options": {k: v for k, v in sorted(options.items())}, **signature(graph),
            "opencl": {"source": "model.cl", "build_options": dialect.build_options, "precision": precision,
                       "extensions": _extensions(dialect, precision_of(options)), "planned_for": limits.to_json()},
            "memory_plan": {"workspace_bytes": plan.workspace_bytes, "weights_bytes": len(plan.weights),
                            "scratch_bytes": program.scratch_bytes,
                            "kernels": program.kernels,
                            "inputs": _buffer_entries(stored, [Value(n, 0) for n in stored.inputs]),
                            "outputs": _buffer_entries(stored, [v for _, v in stored.outputs])},
            "launches": program.steps, "kernels": program.table,
        }
        if bounds:
            bounds.describe(manifest, stored, factors)
        if extent:
            extent.describe(manifest, output_axes(stored, axes, extent))
        artifact = Artifact(manifest, {"model.cl": program.source.encode(), "weights.bin": plan.weights})
        return add_report(artifact, graph, fp16, self.name, options) if fp16 else artifact
