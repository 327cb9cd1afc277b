"""What this machine can run artifacts on: `available_devices()` and `kiln devices`.

The CPU (name, cores, the vector ISA features code generation uses), every OpenCL device pyopencl
sees (platform, name, driver, fp16/fp64 support, memory, compute units; nothing when pyopencl is
absent) and the GNA software executor (bit-exact integer and fp32 emulation, the generations its
streams may target). numpy and the standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

# CPU features that matter to the kernels Kiln generates (as /proc/cpuinfo spells them).
ISA_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


@dataclass(frozen=True)
class Device:
    """One place artifacts run: `target` is the artifact target that runs there; `selector` what to pass
    to runtime.load(device=...) for it (OpenCL devices)."""

    target: str
    name: str
    details: dict = field(default_factory=dict)
    selector: str | None = None


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo; the platform's processor name elsewhere."""
    name, flags = platform.processor() or platform.machine(), set()
    path = Path("/proc/cpuinfo")
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                name = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    return name, flags


def cpu_device() -> Device:
    name, flags = _cpuinfo()
    return Device("cpu", name, {"cores": os.cpu_count(), "architecture": platform.machine(),
                                "isa": [feature for feature in ISA_FEATURES if feature in flags]})


def opencl_device_list() -> list[Device]:
    from runtime.gpu import OpenCLError, import_pyopencl, opencl_devices

    try:
        cl = import_pyopencl()
    except OpenCLError:  # no pyopencl: no OpenCL devices
        return []
    devices = []
    for platform_index, device_index, device in opencl_devices(cl):
        extensions = device.extensions.split()
        devices.append(Device("gpu", device.name.strip(), {
            "platform": device.platform.name.strip(), "driver": device.driver_version,
            "type": cl.device_type.to_string(device.type), "compute_units": device.max_compute_units,
            "memory_bytes": device.global_mem_size, "fp16": "cl_khr_fp16" in extensions,
            "fp64": "cl_khr_fp64" in extensions}, selector=f"{platform_index}:{device_index}"))
    return devices


def gna_device() -> Device:
    from runtime.gna.format import GENERATIONS

    return Device("gna", "GNA software executor", {"modes": ["exact (bit-exact integer)", "fp32 emulation"],
                                                   "generations": list(GENERATIONS)})


def available_devices() -> list[Device]:
    """Every device this runtime can run artifacts on, the CPU first."""
    return [cpu_device(), *opencl_device_list(), gna_device()]
