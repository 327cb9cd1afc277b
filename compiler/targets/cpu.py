"""The cpu target: every node becomes an LLVM kernel in one native library with one entry point.

The artifact holds model.so (kernels + AOT entry + thread pool), model.h (the C interface),
weights.bin (64-byte aligned, memory-mapped at load) and the manifest with the memory plan.
"""

from __future__ import annotations

from compiler.artifact import Artifact, compiler_version
from compiler.codegen.llvm.aot import ENTRY, PROFILED_ENTRY, build_module, kernel_table
from compiler.codegen.llvm.header import c_header
from compiler.codegen.llvm.irhelpers import ELEMENT_TYPES
from compiler.codegen.llvm.kernels.registry import in_place_input, kernel_for
from compiler.codegen.llvm.linker import link_shared_library
from compiler.codegen.llvm.machine import MachineSpec, compile_module
from compiler.codegen.memory_plan import plan_memory
from compiler.dynamic_batch import BatchBounds, DynamicBatchError, batch_factors, mark_linear_rows
from compiler.codegen.llvm.extent_marks import drop_honored_masks, mark_extent_kernels
from compiler.dynamic_extent import ExtentBounds, extent_axes, output_axes
from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType
from compiler.partition import hetero_artifact, split
from compiler.precision.fp16_report import add_report
from compiler.precision.weights_fp16 import cpu_weights
from compiler.passes.manager import PassSpec
from compiler.progress import current
from compiler.targets.base import Target, Unsupported, boundary_types, register_target
from compiler.targets.graph_passes import shared_passes
from compiler.targets.host import HostTarget
from compiler.targets.ref import RefTarget, signature


def _static(value_type) -> bool:
    return isinstance(value_type, TensorType) and value_type.is_static


def _host_value(value_type) -> bool:
    """String tensors (of any shape) live in host parts."""
    return isinstance(value_type, TensorType) and value_type.dtype == "string"


def _node_problem(graph: Graph, node: Node) -> str | None:
    if graph.subgraphs(node):
        return "control flow with subgraphs is not compiled by the cpu target yet"
    types = [t for t in graph.input_types(node) if t is not None] + list(node.outputs)
    for value_type in types:
        if not isinstance(value_type, TensorType):
            return f"{value_type} values (sequences/optionals) are not compiled by the cpu target"
        if not value_type.is_static:
            return f"shape {value_type} is not static: give input shapes, each dim a size or LOW..HIGH bounds"
        if value_type.dtype not in ELEMENT_TYPES:
            return f"dtype {value_type.dtype} is not compiled by the cpu target"
    spec = kernel_for(node)
    if spec is None:
        return f"no cpu kernel for {node.qualified_op}"
    return spec.check(graph, node)


@register_target
class CpuTarget(Target):
    name = "cpu"
    description = "native code for this CPU (or --triple/--cpu/--features) through LLVM, one entry point"

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        problems = []
        for name, value_type in boundary_types(graph):
            if not _static(value_type) and not _host_value(value_type):
                problems.append(Unsupported(name, "graph input/output", f"type {value_type} is not a static tensor: "
                                            "give input shapes, each dim a size or LOW..HIGH bounds (--shape), or "
                                            "several (--specialize)"))
        return problems + self.node_problems(graph)

    def node_problem(self, graph: Graph, node: Node) -> str | None:
        """Why neither a kernel nor a host part (the string ops, compiler/targets/host.py) can run `node`."""
        problem = _node_problem(graph, node)
        return None if problem and HostTarget().node_problem(graph, node) is None else problem

    def pipeline(self, options: dict) -> list[PassSpec]:
        p = shared_passes("cpu", kernel="kernel")
        widen = PassSpec("widen-half-floats", why="float16/bfloat16 ops with no half kernel compute in float32")
        transposes = PassSpec("cancel-transposes", why="Transpose pairs merge and cancel, sunk through elementwise ops")
        reshapes = PassSpec("fold-reshapes", why="Reshape/Flatten/Squeeze chains become one Reshape or none")
        normalization = PassSpec("fuse-normalization", why="Softmax and LayerNormalization (also written out as "
                                 "ReduceMean/Sub/Pow/...) compute their input from the elementwise ops before them "
                                 "in their own row loop (after fuse-epilogues, before fuse-elementwise takes them)")
        squares = PassSpec("square-powers", why="Pow(x, 2) becomes Mul(x, x): the same bits, and it fuses")
        subsample = PassSpec("subsample-pointwise", why="a strided 1x1 Conv reads its pixels through a Slice and "
                             "runs as a contiguous GEMM (before fuse-epilogues makes it a FusedConv)")
        sink = PassSpec("sink-dequantize", why="MaxPool/Reshape/Transpose/... run on 8-bit values inside QDQ chains "
                        "and Q(DQ(x)) cancels, so int8 flows between the fused int8 kernels")
        int8 = PassSpec("fuse-quantized-linear", {"qlinear": bool(options.get("fast_qlinear"))},
                        why="DequantizeLinear -> Conv/MatMul/Gemm [-> Relu/Clip] -> QuantizeLinear (and with "
                        "fast_qlinear, QLinearConv/MatMul) become int8 kernels (before fold-constants dequantizes "
                        "the weights)")
        blocked = PassSpec("block-channels", why="chains of convolutions keep their activations in the blocked "
                           "channel layout NCHWc, converted only at the chain's ends (after fuse-epilogues: a "
                           "blocked conv takes its epilogue along)")
        pack = PassSpec("pack-gemm-weights", why="a Gemm/MatMul's constant B is laid out once as the GEMM kernel's "
                        "panels instead of copied into them on every run (after fuse-epilogues: it takes the fused op)")
        add = PassSpec("fuse-quantized-add", why="Q(DQ(a) + DQ(b)) (residual additions) is one 8-bit pass")
        identity = PassSpec("eliminate-identity", why="Identity and inference Dropout go before fusion and blocking, "
                            "which they would split (SqueezeNet's Dropout before its last conv)")
        return [sink, int8, add, p["fold"], p["flex"], p["expand"], p["unroll"], p["select"], p["fold"], p["expand"],
                identity, p["merge"], p["masks"], transposes, reshapes, squares, p["batch_norm"], subsample,
                p["epilogues"], pack, blocked, normalization, p["fuse"], widen, *RefTarget().pipeline(options)]

    def emit(self, graph: Graph, options: dict) -> Artifact:
        """Native code; with string nodes, a hetero artifact of native and host parts."""
        on_host = {node.name for node in graph.nodes() if not (node.is_input or node.is_constant)
                   and _node_problem(graph, node)}
        if not on_host:
            return self._emit_native(graph, options)
        if BatchBounds.from_options(options) or ExtentBounds.from_options(options):
            raise DynamicBatchError(f"nodes {sorted(on_host)[:5]} run on the host (string tensors), which takes no "
                                    "dynamic dims; compile one part per size with specialize= instead")
        parts = split(graph, lambda node: "host" if node.name in on_host else "cpu")
        return hetero_artifact(graph, parts, lambda part, sub: HostTarget().emit(sub, options) if part.device == "host"
                               else self._emit_native(sub, options))

    def _emit_native(self, graph: Graph, options: dict) -> Artifact:
        machine = MachineSpec(options.get("triple", ""), options.get("cpu", ""), options.get("features", "")).resolved()
        progress = current()
        extent = ExtentBounds.from_options(options)
        axes = extent_axes(graph, extent) if extent else None
        if extent:
            mark_extent_kernels(graph, axes, extent.dims[0].high)
            drop_honored_masks(graph)
        with progress.stage("memory plan"):
            plan = plan_memory(graph, in_place_input, precompute=True, concat_in_place=True)
        bounds = BatchBounds.from_options(options)
        factors = batch_factors(graph, bounds) if bounds else None
        if bounds:
            mark_linear_rows(graph, factors, bounds)
        with progress.stage("kernels"):
            module = build_module(graph, plan, (bounds.chunk, factors) if bounds else None,
                                  ([dim.high for dim in extent.dims], axes) if extent else None)
        with progress.stage("llvm"):
            code = compile_module(module, machine)
        with progress.stage("link"):
            library = link_shared_library({"model.o": code})
        manifest = {
            "target": self.name, "compiler_version": compiler_version(),
            "options": {k: v for k, v in sorted(options.items())}, **signature(graph),
            "machine": {"triple": machine.triple, "cpu": machine.cpu},
            "entry": ENTRY, "profiled_entry": PROFILED_ENTRY, "kernels": kernel_table(graph, plan),
            "memory_plan": {"workspace_bytes": plan.workspace_bytes, "weights_bytes": len(plan.weights),
                            "kernels": sum(1 for s in plan.run_steps if s.node is not None),
                            "precomputed_offset": plan.precomputed_offset,
                            "precomputed_bytes": plan.precomputed_bytes,
                            "precomputed": [s.node.name for s in plan.precompute_steps]},
        }
        if bounds:
            bounds.describe(manifest, graph, factors)
        if extent:
            extent.describe(manifest, output_axes(graph, axes, extent))
        weights, storage, fp16 = cpu_weights(graph, plan, options)  # precision fp16: float16 weights
        if storage is not None:
            manifest["weights_storage"] = storage
        header = c_header(graph, plan, storage, bounds.chunk if bounds else None,
                          [dim.high for dim in extent.dims] if extent else None).encode()
        artifact = Artifact(manifest, {"model.so": library, "model.h": header, "weights.bin": weights})
        return add_report(artifact, graph, fp16, self.name, options) if fp16 else artifact
