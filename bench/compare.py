"""Kiln's cpu target beside ONNX Runtime and OpenVINO, all in the same run.

    python bench/compare.py [--models light_resnet50 bert_encoder ...] [--threads 1 all]
                            [--iterations 20] [--first-inference] [--gflops] [--out DIR]
    python bench/compare.py --precision int8 ...   (bench/int8_compare.py: Kiln int8 vs fp32 vs ORT int8)

Models: the 9 light model-zoo models inside the onnx wheel, plus MobileNetV2 and a BERT-style
encoder built by bench/models.py. For each model and thread count it measures the median latency
of Kiln, ONNX Runtime and OpenVINO (fp32: OpenVINO's inference precision is pinned to f32, since on
CPUs with AMX or AVX512-BF16 it would otherwise run bfloat16), prints a table of medians and ratios
(Kiln/ORT, Kiln/OV) and writes it as DIR/compare.md and DIR/compare.json.

`--first-inference` adds the time to first inference in a fresh process (imports + load + first
run; ORT: session creation + first run; OpenVINO: compile_model + first infer). `--gflops` adds the
achieved GFLOP/s of Kiln's Conv/Gemm/MatMul kernels (from a per-kernel profile) next to numpy's
sgemm at 1024x1024 on the same machine and thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import BenchModel, bert_encoder, mobilenet_v2  # noqa: E402

LIGHT = ("light_bvlc_alexnet", "light_densenet121", "light_inception_v1", "light_inception_v2", "light_resnet50",
         "light_shufflenet", "light_squeezenet", "light_vgg19", "light_zfnet512")
BUILT = {"mobilenet_v2": mobilenet_v2, "bert_encoder": bert_encoder}
PEERS = ("kiln", "onnxruntime", "openvino")


def light_model(name: str) -> BenchModel:
    model = onnx.load(str(Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"{name}.onnx"))
    graph_inputs = {i.name for i in model.graph.initializer}
    info = next(i for i in model.graph.input if i.name not in graph_inputs)
    shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
    return BenchModel(name, model, lambda rng: {info.name: rng.standard_normal(shape).astype(np.float32)})


def load_model(name: str) -> BenchModel:
    return BUILT[name]() if name in BUILT else light_model(name)


# --- the three runtimes, each as "a function that runs one inference" -------------------------------

def kiln_runner(artifact: Path, feeds: dict, threads: int):
    import runtime

    model = runtime.load(artifact, num_threads=threads)
    return lambda: model.infer(feeds)


def onnxruntime_runner(model_path: Path, feeds: dict, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def openvino_config(threads: int) -> dict:
    return {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}


def openvino_runner(model_path: Path, feeds: dict, threads: int):
    try:
        import openvino as ov
    except ImportError:
        return None
    compiled = ov.Core().compile_model(str(model_path), "CPU", openvino_config(threads))
    request = compiled.create_infer_request()
    return lambda: request.infer(feeds)


def median_latency(run, iterations: int) -> float:
    run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# --- time to first inference, each peer in a fresh process ------------------------------------------

FIRST_INFERENCE = {
    "kiln": """
import runtime
model = runtime.load({artifact!r}, num_threads={threads})
model.infer(feeds)
""",
    "onnxruntime": """
import onnxruntime as ort
options = ort.SessionOptions(); options.intra_op_num_threads = {threads}
ort.InferenceSession({model!r}, options, providers=["CPUExecutionProvider"]).run(None, feeds)
""",
    "openvino": """
import openvino as ov
compiled = ov.Core().compile_model({model!r}, "CPU", {config!r})
compiled.create_infer_request().infer(feeds)
""",
}


def first_inference(peer: str, inputs: Path, **fields) -> float | None:
    code = ("import time; start = time.perf_counter()\nimport numpy as np\n"
            f"feeds = dict(np.load({str(inputs)!r}))\n" + FIRST_INFERENCE[peer].format(**fields)
            + "print(time.perf_counter() - start)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    return float(result.stdout.split()[-1]) if result.returncode == 0 else None


# --- GFLOP/s of the heavy kernels ---------------------------------------------------------------------

def sgemm_gflops(threads: int, size: int = 1024, repeats: int = 10) -> float:
    """numpy's sgemm at size x size x size, in a process whose BLAS uses `threads` threads."""
    code = f"""
import time, numpy as np
a = np.random.default_rng(0).standard_normal(({size}, {size})).astype(np.float32); b = a.copy(); a @ b
times = []
for _ in range({repeats}):
    start = time.perf_counter(); a @ b; times.append(time.perf_counter() - start)
print(2 * {size} ** 3 / min(times) / 1e9)
"""
    variables = {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, **variables})
    return float(result.stdout.split()[-1])


def heavy_kernel_gflops(artifact: Path, feeds: dict, threads: int, iterations: int) -> dict:
    """Achieved GFLOP/s over all Conv/Gemm/MatMul kernels (fused ones included) and their share of time."""
    import runtime
    from runtime.benchmark import benchmark

    result = benchmark(runtime.load(artifact, num_threads=threads), feeds, iterations=iterations, profile=True)
    kernels = result.profile()
    heavy = [k for k in kernels if k.flops]
    milliseconds = sum(k.milliseconds for k in heavy)
    return {"gflops_per_second": sum(k.flops for k in heavy) / milliseconds * 1e-6 if milliseconds else None,
            "share_of_kernel_time": milliseconds / (sum(k.milliseconds for k in kernels) or 1.0)}


# --- the run and its report ---------------------------------------------------------------------------

def measure(bench: BenchModel, directory: Path, thread_counts: list[int], args) -> dict:
    import compiler

    model_path = directory / f"{bench.name}.onnx"
    onnx.save(bench.model, str(model_path))
    feeds = bench.make_inputs(np.random.default_rng(0))
    start = time.perf_counter()
    artifact = compiler.compile(bench.model, target="cpu").save(directory / f"{bench.name}.kiln")
    entry = {"compile_s": time.perf_counter() - start, "threads": {}}
    runners = {"kiln": lambda threads: kiln_runner(artifact, feeds, threads),
               "onnxruntime": lambda threads: onnxruntime_runner(model_path, feeds, threads),
               "openvino": lambda threads: openvino_runner(model_path, feeds, threads)}
    for threads in thread_counts:
        row = {"median_ms": {}}
        for peer in PEERS:
            run = runners[peer](threads)
            row["median_ms"][peer] = None if run is None else median_latency(run, args.iterations) * 1e3
        if args.first_inference:
            inputs = directory / f"{bench.name}_inputs.npz"
            np.savez(inputs, **feeds)
            row["first_inference_s"] = {peer: first_inference(peer, inputs, artifact=str(artifact),
                                                               model=str(model_path), threads=threads,
                                                               config=openvino_config(threads))
                                        for peer in PEERS}
        if args.gflops:
            row["heavy_kernels"] = heavy_kernel_gflops(artifact, feeds, threads, args.iterations)
        entry["threads"][threads] = row
        print(f"{bench.name} @ {threads} thread(s): " + ", ".join(
            f"{peer} {ms:.2f} ms" for peer, ms in row["median_ms"].items() if ms is not None), flush=True)
    return entry


def ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else "-"


def markdown(report: dict) -> str:
    lines = []
    for threads in report["thread_counts"]:
        lines += [f"### {threads} thread(s)", "",
                  "| model | compile s | Kiln ms | ORT ms | OpenVINO ms | Kiln/ORT | Kiln/OV |",
                  "|---|---|---|---|---|---|---|"]
        for name, entry in report["models"].items():
            median = entry["threads"][threads]["median_ms"]
            cells = [f"{median[p]:.2f}" if median[p] is not None else "-" for p in PEERS]
            lines.append(f"| {name} | {entry['compile_s']:.1f} | " + " | ".join(cells) + " | "
                         f"{ratio(median['kiln'], median['onnxruntime'])} | {ratio(median['kiln'], median['openvino'])} |")
        lines.append("")
        if any("first_inference_s" in e["threads"][threads] for e in report["models"].values()):
            lines += ["| model | first inference: Kiln s | ORT s | OpenVINO s | Kiln/ORT | Kiln/OV |",
                      "|---|---|---|---|---|---|"]
            for name, entry in report["models"].items():
                first = entry["threads"][threads]["first_inference_s"]
                cells = [f"{first[p]:.3f}" if first[p] is not None else "-" for p in PEERS]
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio(first['kiln'], first['onnxruntime'])}"
                             f" | {ratio(first['kiln'], first['openvino'])} |")
            lines.append("")
        if "sgemm_gflops" in report:
            lines += [f"numpy sgemm 1024x1024: {report['sgemm_gflops'][threads]:.1f} GFLOP/s", "",
                      "| model | Kiln Conv/Gemm/MatMul GFLOP/s | share of kernel time |", "|---|---|---|"]
            for name, entry in report["models"].items():
                heavy = entry["threads"][threads]["heavy_kernels"]
                rate = f"{heavy['gflops_per_second']:.1f}" if heavy["gflops_per_second"] else "-"
                lines.append(f"| {name} | {rate} | {heavy['share_of_kernel_time']:.0%} |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    precision = argparse.ArgumentParser(add_help=False)
    precision.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    chosen, rest = precision.parse_known_args()
    if chosen.precision == "int8":  # Kiln int8 vs Kiln fp32 vs ORT's quantize_static: bench/int8_compare.py
        from bench.int8_compare import main as int8_main

        return int8_main(rest)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[precision])
    parser.add_argument("--models", nargs="+", default=list(LIGHT) + list(BUILT), choices=list(LIGHT) + list(BUILT))
    parser.add_argument("--threads", nargs="+", default=["1", "all"],
                        help="thread counts to measure; 'all' means every core (default: 1 all)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--first-inference", action="store_true")
    parser.add_argument("--gflops", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("compare-results"))
    args = parser.parse_args()
    thread_counts = sorted({os.cpu_count() if t == "all" else int(t) for t in args.threads})
    report = {"thread_counts": thread_counts, "cpu_count": os.cpu_count(), "models": {}}
    if args.gflops:
        report["sgemm_gflops"] = {threads: sgemm_gflops(threads) for threads in thread_counts}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            report["models"][name] = measure(load_model(name), Path(directory), thread_counts, args)
    write_report(report, markdown(report), args.out, "compare")


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A titled Markdown table, its cells already formatted."""
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(report: dict, table: str, out: Path, stem: str) -> None:
    """Print the Markdown table and write it and the JSON report as OUT/<stem>.md and .json."""
    print("\n" + table)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(table + "\n")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"written: {out / f'{stem}.md'}, {out / f'{stem}.json'}")


if __name__ == "__main__":
    main()
