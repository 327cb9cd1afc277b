"""Runs gpu artifacts: builds model.cl with pyopencl (imported only here, when a gpu artifact is
loaded) on the chosen device and replays the launch plan, one command queue per calling thread.

Device choice (runtime.load(..., device=...) or the KILN_OPENCL_DEVICE environment variable):
an index into the devices of every platform in order ("1"), "platform:device" indices ("0:1"),
or a case-insensitive part of "<platform name> <device name>" ("nvidia", "pthread"). By default
the first GPU, else the first device.

Program binaries are cached in $KILN_CACHE_DIR/opencl (default ~/.cache/kiln/opencl), keyed by
the source's sha256, the device, its driver version and the build options; a miss logs which of
those changed since the closest cached build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from runtime.artifact_reader import ArtifactError
from runtime.cpu import numpy_dtype
from runtime.dynamic_batch import BatchPlan
from runtime.dynamic_extent import ExtentPlan

log = logging.getLogger("kiln.runtime.gpu")
DEVICE_ENV = "KILN_OPENCL_DEVICE"
CACHE_ENV = "KILN_CACHE_DIR"
KEY_FIELDS = ("source_sha256", "device", "driver_version", "build_options")


class OpenCLError(ArtifactError):
    """The OpenCL device cannot run this artifact: no such device, missing extension, failed build."""


def import_pyopencl():
    try:
        import pyopencl
    except ImportError as error:
        raise OpenCLError(f"running gpu artifacts needs pyopencl ({error}); install it with "
                          "pip install 'pyopencl[pocl]' (PoCL runs OpenCL on the CPU where no GPU driver is)") from None
    return pyopencl


def opencl_devices(cl) -> list[tuple[int, int, object]]:
    """(platform index, device index, device) of every device, platforms in order."""
    try:
        platforms = cl.get_platforms()
    except cl.Error:  # no ICD registered at all
        platforms = []
    return [(p, d, device) for p, platform in enumerate(platforms) for d, device in enumerate(platform.get_devices())]


def _describe(device) -> str:
    return f"{device.platform.name.strip()} {device.name.strip()}"


def select_device(cl, selector=None):
    """The device `selector` names (None: $KILN_OPENCL_DEVICE, else the first GPU, else the first device)."""
    if selector is None:
        selector = os.environ.get(DEVICE_ENV) or None
    devices = opencl_devices(cl)
    if not devices:
        raise OpenCLError("no OpenCL device found: install a driver (pip install 'pyopencl[pocl]' runs on the CPU)")
    listing = "; ".join(f"{i} ({p}:{d}) {_describe(dev)}" for i, (p, d, dev) in enumerate(devices))
    if selector is None:
        gpus = [dev for _, _, dev in devices if dev.type & cl.device_type.GPU]
        return (gpus or [devices[0][2]])[0]
    text = str(selector).strip()
    if re.fullmatch(r"\d+", text):
        if int(text) < len(devices):
            return devices[int(text)][2]
    elif re.fullmatch(r"\d+:\d+", text):
        wanted = tuple(int(part) for part in text.split(":"))
        for p, d, device in devices:
            if (p, d) == wanted:
                return device
    else:
        for _, _, device in devices:
            if text.lower() in _describe(device).lower():
                return device
    raise OpenCLError(f"no OpenCL device matches {text!r}; devices: {listing}")


class ProgramCache:
    """Built program binaries on disk: <key>.bin with its key fields in <key>.json."""

    def __init__(self, directory: Path | None = None):
        root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kiln"
        self.directory = Path(directory) if directory is not None else Path(root) / "opencl"

    @staticmethod
    def key(source: str, device, options: str) -> dict:
        return {"source_sha256": hashlib.sha256(source.encode()).hexdigest(), "device": _describe(device),
                "driver_version": device.driver_version, "build_options": options}

    def _path(self, fields: dict, suffix: str) -> Path:
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        return self.directory / f"{digest[:32]}{suffix}"

    def load(self, fields: dict) -> bytes | None:
        path = self._path(fields, ".bin")
        if path.is_file():
            log.debug("OpenCL program cache hit: %s", path)
            return path.read_bytes()
        log.info("OpenCL program cache miss (%s); building from source", self._miss_reason(fields))
        return None

    def _miss_reason(self, fields: dict) -> str:
        """Which key fields differ from the closest cached entry (same source first)."""
        entries = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                entries.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        if not entries:
            return f"no cached programs in {self.directory}"
        changed = min(([name for name in KEY_FIELDS if entry.get(name) != fields[name]] for entry in entries),
                      key=lambda names: (names[:1] == ["source_sha256"], len(names)))
        details = ", ".join(f"{name} changed" if name == "source_sha256" else
                            f"{name} changed to {fields[name]!r}" for name in changed)
        return details or "the binary of a matching entry is missing"

    def store(self, fields: dict, binary: bytes) -> None:
        """Write atomically; a cache that cannot be written only costs the next build."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for suffix, data in ((".bin", binary), (".json", json.dumps(fields, indent=1).encode())):
                path = self._path(fields, suffix)
                temporary = path.with_suffix(f"{suffix}.{os.getpid()}.{threading.get_ident()}.tmp")
                temporary.write_bytes(data)
                os.replace(temporary, path)
        except OSError as error:
            log.warning("cannot write the OpenCL program cache in %s: %s", self.directory, error)


def _failing_kernels(source: str, build_log: str) -> list[str]:
    """The kernels whose sections hold the lines the build log reports errors at ("file:line:col: ...
    error ..."); each section starts with a line "// kernel NAME: ..." (compiler/codegen/opencl/program.py)."""
    starts = [(number, match.group(1)) for number, line in enumerate(source.splitlines(), 1)
              if (match := re.match(r"// kernel (\w+):", line))]
    names = []
    for line in build_log.splitlines():
        match = re.search(r":(\d+):\d+:", line)
        if match is None or "error" not in line.lower():
            continue
        before = [name for start, name in starts if start <= int(match.group(1))]
        name = before[-1] if before else "(program prelude)"
        if name not in names:
            names.append(name)
    return names


def _quiet_build(cl, program, options: str, **kwargs):
    """Build without pyopencl's warning about compiler output (warnings of the OpenCL compiler)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cl.CompilerWarning)
        return program.build(options=options, **kwargs)


def build_program(cl, context, device, source: str, options: str, cache: ProgramCache, nodes: dict[str, str]):
    """The built program, from the cache when it holds a binary for this key; a build failure raises
    OpenCLError naming the failing kernels (and their nodes) with the build log."""
    fields = cache.key(source, device, options)
    binary = cache.load(fields)
    if binary is not None:
        try:
            return _quiet_build(cl, cl.Program(context, [device], [binary]), options)
        except cl.Error as error:
            log.warning("cached OpenCL binary rejected (%s); building from source", error)
    program = cl.Program(context, source)
    try:
        _quiet_build(cl, program, options, cache_dir=False)
    except cl.RuntimeError:
        build_log = program.get_build_info(device, cl.program_build_info.LOG)
        kernels = _failing_kernels(source, build_log)
        where = ", ".join(f"kernel {name!r}" + (f" (node {nodes[name]!r})" if name in nodes else "") for name in kernels)
        raise OpenCLError(f"OpenCL build failed on {_describe(device)} in {where or 'the program'}; this artifact "
                          f"cannot run on this device or its compiler has a bug. Build log:\n{build_log.strip()}") \
            from None
    cache.store(fields, program.get_info(cl.program_info.BINARIES)[0])
    return program


def _shrunk(global_size: tuple, local_size: tuple, rule: dict, batch: int) -> tuple:
    """A launch's NDRange for the first `batch` entries (its step's `batch` rule, compiler/codegen/opencl/
    program.py)."""
    sizes, axis = list(global_size), rule["axis"]
    sizes[axis] = -(-batch * rule["per_entry"] // rule["per_group"]) * local_size[axis]
    return tuple(sizes)


def _cut_to_extent(global_size: tuple, local_size: tuple, rule: dict, batch: int | None, size: int) -> tuple:
    """A launch's NDRange for the positions below `size` of the first dynamic dim (its step's `extent` rule,
    compiler/codegen/opencl/program.py), when the call leaves one group of them (else as it is)."""
    groups = rule["groups"] * (batch if rule["batched"] and batch is not None else 1)
    if groups != 1:
        return global_size
    sizes, axis = list(global_size), rule["axis"]
    units = -(-size * rule["units"] // rule["bound"])
    sizes[axis] = min(sizes[axis], -(-units // rule["per_group"]) * local_size[axis])
    return tuple(sizes)


class _Launch(NamedTuple):
    """A kernel launch of a slot: its arguments set; `profile`/`batch`/`extent` as the manifest's step has them."""

    kernel: object
    global_size: tuple
    local_size: tuple
    profile: int | None
    batch: dict | None
    extent: dict | None


class _Slot:
    """One calling thread's queue, workspace, input/output buffers and kernels with their arguments set."""

    def __init__(self, executor: "GpuExecutor", profiled: bool = False):
        cl, context, plan = executor.cl, executor.context, executor.manifest["memory_plan"]
        flags = cl.mem_flags
        properties = cl.command_queue_properties.PROFILING_ENABLE if profiled else 0
        self.queue = cl.CommandQueue(context, properties=properties)
        self.workspace = cl.Buffer(context, flags.READ_WRITE, max(plan["workspace_bytes"], 1))
        self.inputs = [cl.Buffer(context, flags.READ_ONLY, max(nbytes, 1)) for nbytes in executor.input_bytes]
        if executor.batch:  # entries past a call's batch are computed too: from zeros, not stale device memory
            for buffer, nbytes in zip(self.inputs, executor.input_bytes):
                if nbytes:
                    cl.enqueue_fill_buffer(self.queue, buffer, np.uint8(0), 0, nbytes)
        self.outputs = [cl.Buffer(context, flags.READ_WRITE, max(nbytes, 1)) for nbytes in executor.output_bytes]
        # kept as an attribute: the kernels use it, and a buffer left unreferenced would be released
        self.scratch = cl.Buffer(context, flags.READ_WRITE, max(plan.get("scratch_bytes", 0), 1))
        sizes = len(executor.extent.bounds) if executor.extent else 1
        self.extent = cl.Buffer(context, flags.READ_ONLY, 8 * sizes)  # dynamic extents' sizes, written each run
        buffers = {"weights": executor.weights, "workspace": self.workspace, "scratch": self.scratch,
                   "extent": self.extent}
        self.steps = []
        for step in executor.manifest["launches"]:
            if "copy" in step:
                copy = step["copy"]
                self.steps.append(("copy", self._buffer(buffers, copy["from"]), copy["from"]["offset"],
                                   self._buffer(buffers, copy["to"]), copy["to"]["offset"], copy["bytes"]))
                continue
            kernel = cl.Kernel(executor.program, step["kernel"])
            arguments = []
            for arg in step["args"]:
                arguments += [self._buffer(buffers, arg), np.uint64(arg["offset"])]
            kernel.set_args(*arguments)
            self.steps.append(_Launch(kernel, tuple(step["global"]), tuple(step["local"]), step.get("profile"),
                                      step.get("batch"), step.get("extent")))

    def _buffer(self, buffers: dict, place: dict):
        if place["buffer"] == "input":
            return self.inputs[place["index"]]
        if place["buffer"] == "output":
            return self.outputs[place["index"]]
        return buffers[place["buffer"]]


class GpuExecutor:
    """Holds the device, the built program and the weights; each calling thread gets a _Slot."""

    def __init__(self, files, device=None):
        self.cl = cl = import_pyopencl()
        self.manifest = files.manifest
        opencl = self.manifest["opencl"]
        self.device = select_device(cl, device)
        self._check_device(opencl)
        plan = self.manifest["memory_plan"]
        self.input_dtypes = [numpy_dtype(entry["dtype"]) for entry in plan["inputs"]]
        self.output_dtypes = [numpy_dtype(entry["dtype"]) for entry in plan["outputs"]]
        self.input_bytes = [int(np.prod(e["shape"], dtype=np.int64)) * d.itemsize
                            for e, d in zip(plan["inputs"], self.input_dtypes)]
        self.output_bytes = [int(np.prod(e["shape"], dtype=np.int64)) * d.itemsize
                             for e, d in zip(plan["outputs"], self.output_dtypes)]
        self.output_shapes = [entry["shape"] for entry in plan["outputs"]]  # a dynamic batch's at the compiled chunk
        self.batch, self.extent = BatchPlan.of(self.manifest), ExtentPlan.of(self.manifest)
        weights = files.read("weights.bin")
        if len(weights) != plan["weights_bytes"]:
            raise ArtifactError("weights.bin does not match the manifest's buffer plan; recompile the artifact")
        self.context = cl.Context([self.device])
        flags = cl.mem_flags
        host = np.frombuffer(weights, np.uint8) if len(weights) else np.zeros(1, np.uint8)
        self.weights = cl.Buffer(self.context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=host)
        source = bytes(files.read(opencl["source"])).decode()
        nodes = {step["kernel"]: step["node"] for step in self.manifest["launches"] if "kernel" in step}
        self.program = build_program(cl, self.context, self.device, source, opencl["build_options"],
                                     ProgramCache(), nodes)
        self.threads = 1
        self._local = threading.local()

    def _check_device(self, opencl: dict) -> None:
        missing = sorted(set(opencl["extensions"]) - set(self.device.extensions.split()))
        if missing:
            why = {"cl_khr_fp16": f"(precision {opencl['precision']!r}) needs; recompile with precision='float32'",
                   "cl_khr_fp64": "needs for its float64 tensors; convert the model to float32"}
            raise OpenCLError(f"device {_describe(self.device)!r} lacks {', '.join(missing)}, which this artifact "
                              f"{'; '.join(why.get(name, 'needs') for name in missing)}, or choose another device")
        largest = max([int(np.prod(step["local"])) for step in self.manifest["launches"] if "local" in step] + [1])
        if largest > self.device.max_work_group_size:
            raise OpenCLError(f"this artifact launches work groups of {largest} items; device "
                              f"{_describe(self.device)!r} allows {self.device.max_work_group_size}: recompile "
                              "with device= naming it")

    def _slot(self, profiled: bool = False) -> _Slot:
        name = "profiled_slot" if profiled else "slot"
        slot = getattr(self._local, name, None)
        if slot is None:
            slot = _Slot(self, profiled)
            setattr(self._local, name, slot)
        return slot

    def run(self, inputs: list) -> list:
        """Outputs for `inputs` (already validated against the signature by the caller)."""
        return self._call(self._slot(), inputs, None)

    def run_profiled(self, inputs: list) -> tuple[list, list[int]]:
        """run() on a profiling queue: (outputs, device nanoseconds per manifest["kernels"] entry, the
        launches of one node added up), read from each launch's OpenCL event."""
        if "kernels" not in self.manifest:
            raise ArtifactError("this gpu artifact was compiled by a Kiln without per-kernel profiling; "
                                "recompile it to profile it")
        events: list = []
        results = self._call(self._slot(profiled=True), inputs, events)
        nanoseconds = [0] * len(self.manifest["kernels"])
        for entry, event in events:
            nanoseconds[entry] += event.profile.end - event.profile.start
        return results, nanoseconds

    def _call(self, slot: _Slot, inputs: list, events: list | None) -> list:
        """One inference on `slot`; a dynamic batch larger than the compiled chunk runs chunk by chunk."""
        batch = self.batch.batch_of(inputs) if self.batch else None
        if batch is not None and batch > self.batch.chunk:
            return self.batch.in_chunks(inputs, batch,
                                        lambda part: self._run(slot, part, events, self.batch.batch_of(part)))
        return self._run(slot, inputs, events, batch)

    def _run(self, slot: _Slot, inputs: list, events: list | None, batch: int | None) -> list:
        """Enqueue one inference on `slot` and wait for it; `events` collects (profile entry, event) per launch.
        A dynamic batch uploads and reads back its `batch` entries and launches the groups that compute them."""
        cl = self.cl
        staged = [np.ascontiguousarray(value, dtype=dtype) for value, dtype in zip(inputs, self.input_dtypes)]
        extent = self.extent.sizes_of(staged) if self.extent else None
        if extent is not None:  # inputs padded with zeros to the bounds; the masks read the sizes
            staged = [self.extent.padded(value, index) if held else value
                      for index, (held, value) in enumerate(zip(self.extent.input_axes, staged))]
            staged.append(np.array(extent, np.int64))
        for buffer, array in zip(slot.inputs + [slot.extent], staged):
            if array.nbytes:
                cl.enqueue_copy(slot.queue, buffer, array, is_blocking=False)
        for step in slot.steps:
            if isinstance(step, _Launch):
                global_size = step.global_size if batch is None or step.batch is None else \
                    _shrunk(step.global_size, step.local_size, step.batch, batch)
                if extent is not None and step.extent is not None:
                    global_size = _cut_to_extent(global_size, step.local_size, step.extent, batch, extent[0])
                event = cl.enqueue_nd_range_kernel(slot.queue, step.kernel, global_size, step.local_size)
                if events is not None and step.profile is not None:
                    events.append((step.profile, event))
            else:
                _, source, source_offset, target, target_offset, size = step
                cl.enqueue_copy(slot.queue, target, source, byte_count=size, src_offset=source_offset,
                                dst_offset=target_offset)
        results = [np.empty(shape, dtype=dtype) for shape, dtype in zip(self.output_shapes, self.output_dtypes)]
        if batch is not None:
            results = self.batch.first_entries(results, batch)
        for buffer, result in zip(slot.outputs, results):
            if result.nbytes:
                cl.enqueue_copy(slot.queue, result, buffer, is_blocking=False)
        slot.queue.finish()
        if extent is not None:
            results = self.extent.cut(results, extent)
        wanted = [numpy_dtype(entry["type"]["tensor"]) for entry in self.manifest["outputs"]]
        return [result if result.dtype == dtype else result.astype(dtype) for result, dtype in zip(results, wanted)]
