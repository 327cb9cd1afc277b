"""The LLVM target machine: verify a module, optimize it at O3, emit object code.

Host by default (its triple, CPU name and features); `triple`, `cpu` and `features`
select another machine for cross-compiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm
from llvmlite import ir

_initialized = False


def _initialize() -> None:
    global _initialized
    if not _initialized:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        _initialized = True


def _full_width(features: str) -> str:
    """On AVX-512 hosts LLVM's tuning keeps auto-vectorized loops at 256 bits; let them use all 512 (measured:
    BERT encoder 8.56 -> 8.13 ms, MobileNetV2 12.09 -> 11.87 ms at 1 thread; conv-bound models unchanged)."""
    return features + ",-prefer-256-bit" if "+avx512f" in features.split(",") else features


@dataclass(frozen=True)
class MachineSpec:
    """What to compile for; empty fields mean the host's."""

    triple: str = ""
    cpu: str = ""
    features: str = ""

    def resolved(self) -> "MachineSpec":
        _initialize()
        if self.triple and self.triple != llvm.get_process_triple():
            return MachineSpec(self.triple, self.cpu or "generic", self.features)
        return MachineSpec(llvm.get_process_triple(), self.cpu or llvm.get_host_cpu_name(),
                           self.features or _full_width(llvm.get_host_cpu_features().flatten()))

    @property
    def vector_bits(self) -> int:
        """Widest float vector the features allow (for tiling decisions)."""
        features = self.resolved().features
        if "+avx512f" in features:
            return 512
        if "+avx" in features:
            return 256
        return 128


class CodegenError(RuntimeError):
    """LLVM rejected the generated module (a Kiln bug): the message holds LLVM's words."""


def scheduling_cpu(spec: MachineSpec) -> str:
    """The CPU whose scheduling model LLVM tunes for: the machine's own, except AMD Zen's (znver*). That model
    moves a register tile's A broadcasts far ahead of their FMAs, and the tile's registers spill to the stack
    (88 stack moves per 256 FMAs in ResNet-50's 1x1 convs). The generic model of the same ISA level schedules
    the tiles with fewer spills: on Zen 4, ResNet-50 0.96x, BERT 0.88x, MobileNetV2 0.96x their time at 1 thread.
    The instructions are the features' either way; only their order changes."""
    if not spec.cpu.startswith("znver"):
        return spec.cpu
    return "x86-64-v4" if "+avx512f" in spec.features.split(",") else "x86-64-v3"


def target_machine(spec: MachineSpec):
    spec = spec.resolved()
    try:
        target = llvm.Target.from_triple(spec.triple)
    except RuntimeError as error:
        raise CodegenError(f"LLVM cannot target triple {spec.triple!r}: {error}") from None
    return target.create_target_machine(cpu=scheduling_cpu(spec), features=spec.features, opt=3, reloc="pic",
                                        codemodel="default")


def compile_module(module: ir.Module, spec: MachineSpec) -> bytes:
    """Verify, optimize (O3) and emit `module` as object code for `spec`."""
    machine = target_machine(spec)
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    try:
        parsed = llvm.parse_assembly(str(module))
        parsed.verify()
    except RuntimeError as error:
        raise CodegenError(f"generated LLVM IR is invalid: {error}") from None
    options = llvm.PipelineTuningOptions(speed_level=3)
    options.loop_vectorization = True
    options.slp_vectorization = True
    options.loop_unrolling = True
    builder = llvm.create_pass_builder(machine, options)
    builder.getModulePassManager().run(parsed, builder)
    return machine.emit_object(parsed)
