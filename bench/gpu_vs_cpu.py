"""Kiln's gpu target on an OpenCL device beside Kiln's cpu target, same models, same run.

    python bench/gpu_vs_cpu.py [--models light_resnet50 mobilenet_v2 bert_encoder] [--device 0]
                               [--threads N] [--iterations 10] [--out DIR]

On PoCL (OpenCL on the CPU, `pyopencl[pocl]`) this is a reference point for the gpu kernels, not a
GPU figure: both targets share the same cores. For each model it compiles a cpu and a gpu artifact
(the gpu one planned for the device it runs on), measures the median latency of each, and checks
that the two agree (largest absolute difference); it prints a table of medians and the gpu/cpu
ratio and writes it as DIR/gpu_vs_cpu.md and DIR/gpu_vs_cpu.json. Models, inputs, the cpu runner
and the median are those of bench/compare.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare import BUILT, LIGHT, kiln_runner, load_model, median_latency, ratio, write_report  # noqa: E402

DEFAULT_MODELS = ("light_resnet50", "mobilenet_v2", "bert_encoder")
TARGETS = ("cpu", "gpu")


def gpu_runner(artifact: Path, feeds: dict, device):
    import runtime

    model = runtime.load(artifact, device=device)
    return lambda: model.infer(feeds)


def device_facts(selector) -> dict:
    """The OpenCL device `selector` picks (as runtime.load does), for a report: its description, driver
    version and whether it reports cl_khr_fp16."""
    from runtime.gpu import import_pyopencl, select_device

    chosen = select_device(import_pyopencl(), selector)
    return {"device": f"{chosen.platform.name.strip()} / {chosen.name.strip()} "
                      f"({chosen.max_compute_units} compute units)",
            "driver": chosen.driver_version, "cl_khr_fp16": "cl_khr_fp16" in chosen.extensions.split()}


def measure(name: str, directory: Path, args) -> dict:
    import compiler

    bench = load_model(name)
    feeds = bench.make_inputs(np.random.default_rng(0))
    entry = {"compile_s": {}, "median_ms": {}}
    runs = {}
    for target in TARGETS:
        options = {"device": args.device} if target == "gpu" else {}
        start = time.perf_counter()
        artifact = compiler.compile(bench.model, target=target, **options).save(directory / f"{name}.{target}.kiln")
        entry["compile_s"][target] = time.perf_counter() - start
        runs[target] = gpu_runner(artifact, feeds, args.device) if target == "gpu" else \
            kiln_runner(artifact, feeds, args.threads)
    outputs = {target: run() for target, run in runs.items()}
    entry["max_abs_difference"] = max(float(np.max(np.abs(outputs["gpu"][key] - outputs["cpu"][key])))
                                      for key in outputs["cpu"])
    for target, run in runs.items():
        entry["median_ms"][target] = median_latency(run, args.iterations) * 1e3
    print(f"{name}: " + ", ".join(f"{t} {ms:.2f} ms" for t, ms in entry["median_ms"].items()), flush=True)
    return entry


def markdown(report: dict) -> str:
    lines = [f"gpu device: {report['device']}; cpu target: {report['threads']} thread(s); "
             f"{report['iterations']} iterations", "",
             "| model | cpu ms | gpu ms | gpu/cpu | max abs difference | compile s (cpu / gpu) |",
             "|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        median, compile_s = entry["median_ms"], entry["compile_s"]
        lines.append(f"| {name} | {median['cpu']:.2f} | {median['gpu']:.2f} | {ratio(median['gpu'], median['cpu'])} | "
                     f"{entry['max_abs_difference']:.1e} | {compile_s['cpu']:.1f} / {compile_s['gpu']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(LIGHT) + list(BUILT))
    parser.add_argument("--device", default=None, help="OpenCL device index or name (default: as runtime.load)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="cpu target threads (default: all)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("gpu-vs-cpu-results"))
    args = parser.parse_args()
    report = {**device_facts(args.device), "threads": args.threads, "iterations": args.iterations,
              "models": {}}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            report["models"][name] = measure(name, Path(directory), args)
    write_report(report, markdown(report), args.out, "gpu_vs_cpu")


if __name__ == "__main__":
    main()
