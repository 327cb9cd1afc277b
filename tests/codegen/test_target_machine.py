"""The CPU whose scheduling model LLVM tunes Kiln's code for."""

import pytest

from compiler.codegen.llvm.machine import MachineSpec, scheduling_cpu

TRIPLE = "x86_64-unknown-linux-gnu"


@pytest.mark.parametrize("cpu, features, expected", [
    ("znver4", "+avx2,+avx512f,+fma", "x86-64-v4"),
    ("znver3", "+avx2,-avx512f,+fma", "x86-64-v3"),
    ("sapphirerapids", "+avx2,+avx512f,+fma", "sapphirerapids"),
    ("generic", "+sse2", "generic"),
])
def test_amd_zen_is_scheduled_by_the_generic_model_of_its_isa_level(cpu, features, expected):
    """Zen's own scheduling model spills register tiles (machine.scheduling_cpu); the features stay the machine's."""
    assert scheduling_cpu(MachineSpec(TRIPLE, cpu, features)) == expected

