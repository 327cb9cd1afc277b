"""Kiln int8 beside Kiln fp32 and ONNX Runtime's quantize_static model of the same network, same run.

    python bench/int8_compare.py [--models light_resnet50 mobilenet_v2 bert_encoder] [--threads 1 all]
                                 [--iterations 20] [--calibration-size 32] [--calibration-method minmax]
                                 [--out DIR]
    (also: python bench/compare.py --precision int8 ...)

Both quantized models use the SAME calibration samples: seeded inputs drawn by the model's own
input maker (bench/models.py, seed 1), given to Kiln as an .npz (`calibration=`) and to ORT
through a CalibrationDataReader. ORT's model is quantize_static's QDQ format with per_channel=True,
QUInt8 activations and QInt8 weights, on the model after ORT's quantization pre-processing
(shape inference and graph optimization: BatchNormalization folded, as Kiln folds it first).
Prints median latencies and the ratios issue 8 sets targets for (Kiln int8 / Kiln fp32 <= 0.6,
Kiln int8 / ORT int8 <= 1.0), and writes DIR/int8_compare.md and .json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare import (BUILT, LIGHT, kiln_runner, load_model, median_latency, onnxruntime_runner,  # noqa: E402
                           ratio, write_report)
from bench.models import BenchModel  # noqa: E402

DEFAULT_MODELS = ("light_resnet50", "mobilenet_v2", "bert_encoder")
PEERS = ("kiln_fp32", "kiln_int8", "ort_int8")


def calibration_samples(bench: BenchModel, count: int, seed: int = 1) -> dict[str, np.ndarray]:
    """[count, *shape] per input, drawn by the model's input maker."""
    rng = np.random.default_rng(seed)
    draws = [bench.make_inputs(rng) for _ in range(count)]
    return {name: np.stack([draw[name] for draw in draws]) for name in draws[0]}


def compile_int8(bench: BenchModel, samples: dict[str, np.ndarray], directory: Path, method: str) -> Path:
    """Kiln's int8 cpu artifact calibrated on `samples`; its report.json stays inside."""
    import compiler

    path = directory / f"{bench.name}_calibration.npz"
    np.savez(path, **samples)
    artifact = compiler.compile(bench.model, target="cpu", precision="int8", calibration=str(path),
                                calibration_method=method)
    return artifact.save(directory / f"{bench.name}_int8.kiln")


def ort_quantized(bench: BenchModel, samples: dict[str, np.ndarray], directory: Path) -> Path:
    """ORT's quantize_static QDQ model of `bench`, calibrated on the same samples (minmax, ORT's default)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            count = len(next(iter(samples.values())))
            self.feeds = iter([{name: stack[i] for name, stack in samples.items()} for i in range(count)])

        def get_next(self):
            return next(self.feeds, None)

    source, prepared, quantized = (directory / f"{bench.name}{suffix}.onnx" for suffix in ("", "_pre", "_ort_int8"))
    model = onnx.ModelProto()
    model.CopyFrom(bench.model)
    constants = {initializer.name for initializer in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]  # IR 3 lists initializers as inputs too,
    del model.graph.input[:]  # and the pre-processing folds some away but would keep them as required inputs
    model.graph.input.extend(inputs)
    model.ir_version = max(model.ir_version, 4)  # the first IR with initializers that are not inputs
    if next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:  # per-channel DQ: axis
        model = onnx.version_converter.convert_version(model, 13)
    onnx.save(model, str(source))
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)  # static shapes: onnx inference suffices
    quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return quantized


def measure(bench: BenchModel, directory: Path, thread_counts: list[int], args) -> dict:
    import compiler

    feeds = bench.make_inputs(np.random.default_rng(0))
    samples = calibration_samples(bench, args.calibration_size)
    start = time.perf_counter()
    fp32 = compiler.compile(bench.model, target="cpu").save(directory / f"{bench.name}.kiln")
    entry = {"compile_s": {"kiln_fp32": time.perf_counter() - start}, "threads": {}}
    start = time.perf_counter()
    int8 = compile_int8(bench, samples, directory, args.calibration_method)
    entry["compile_s"]["kiln_int8"] = time.perf_counter() - start
    ort_model = ort_quantized(bench, samples, directory)
    runners = {"kiln_fp32": lambda threads: kiln_runner(fp32, feeds, threads),
               "kiln_int8": lambda threads: kiln_runner(int8, feeds, threads),
               "ort_int8": lambda threads: onnxruntime_runner(ort_model, feeds, threads)}
    for threads in thread_counts:
        row = {peer: median_latency(runners[peer](threads), args.iterations) * 1e3 for peer in PEERS}
        entry["threads"][threads] = {"median_ms": row}
        print(f"{bench.name} @ {threads} thread(s): " + ", ".join(f"{peer} {ms:.2f} ms" for peer, ms in row.items()),
              flush=True)
    return entry


def markdown(report: dict) -> str:
    lines = [f"calibration: {report['calibration_size']} seeded samples, Kiln method {report['calibration_method']}, "
             "ORT minmax", ""]
    for threads in report["thread_counts"]:
        lines += [f"### {threads} thread(s)", "",
                  "| model | Kiln fp32 ms | Kiln int8 ms | ORT int8 ms | int8/fp32 (<= 0.6) | Kiln/ORT int8 (<= 1.0) |",
                  "|---|---|---|---|---|---|"]
        for name, entry in report["models"].items():
            median = entry["threads"][threads]["median_ms"]
            lines.append(f"| {name} | " + " | ".join(f"{median[p]:.2f}" for p in PEERS) + " | "
                         f"{ratio(median['kiln_int8'], median['kiln_fp32'])} | "
                         f"{ratio(median['kiln_int8'], median['ort_int8'])} |")
        lines.append("")
    return "\n".join(lines)


def parser(description: str = __doc__.splitlines()[0]) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(LIGHT) + list(BUILT))
    result.add_argument("--threads", nargs="+", default=["1", "all"],
                        help="thread counts to measure; 'all' means every core (default: 1 all)")
    result.add_argument("--iterations", type=int, default=20)
    add_calibration_arguments(result)
    return result


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """--calibration-size, --calibration-method and --out, as both int8 scripts take them."""
    parser.add_argument("--calibration-size", type=int, default=32, help="seeded calibration samples (default 32)")
    parser.add_argument("--calibration-method", default="minmax", choices=("minmax", "percentile", "entropy", "mse"))
    parser.add_argument("--out", type=Path, default=Path("compare-results"))


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    thread_counts = sorted({os.cpu_count() if t == "all" else int(t) for t in args.threads})
    report = {"thread_counts": thread_counts, "cpu_count": os.cpu_count(), "calibration_size": args.calibration_size,
              "calibration_method": args.calibration_method, "models": {}}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            report["models"][name] = measure(load_model(name), Path(directory), thread_counts, args)
    write_report(report, markdown(report), args.out, "int8_compare")


if __name__ == "__main__":
    main()
