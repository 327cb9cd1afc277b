"""MobileNetV2 with a dynamic image size beside the same network compiled static per size, in one run.

    python bench/dynamic_resolution.py [--bounds 96 224] [--sizes 224 160 96] [--threads 1 all]
                                       [--iterations 20] [--out DIR]

The MobileNetV2 of bench/models.py, its height and width made symbolic, is compiled once for any
size within the bounds (compiler/dynamic_extent.py: the image padded to the bounds, convolutions
skipping the rows past the valid ones) and once static per measured size; each size runs on both,
checked against ONNX Runtime, and the table gives the median latencies and dynamic / static.
Writes DIR/dynamic_resolution.md and .json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare import kiln_runner, markdown_table, median_latency, ratio, write_report  # noqa: E402
from bench.models import mobilenet_v2  # noqa: E402


def _any_size_model():
    model = mobilenet_v2().model
    for axis, name in ((2, "height"), (3, "width")):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    return model


def measure(args, directory: Path) -> dict:
    import onnxruntime as ort

    import compiler
    import runtime

    model = _any_size_model()
    name = model.graph.input[0].name
    low, high = args.bounds
    dynamic = compiler.compile(model, target="cpu", shapes={name: [1, 3, f"{low}..{high}", f"{low}..{high}"]})
    dynamic = dynamic.save(directory / "dynamic.kiln")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = {}
    for size in args.sizes:
        static = compiler.compile(model, target="cpu", shapes={name: [1, 3, size, size]}).save(
            directory / f"static_{size}.kiln")
        feeds = {name: np.random.default_rng(size).standard_normal((1, 3, size, size)).astype(np.float32)}
        difference = float(np.abs(next(iter(runtime.load(dynamic).infer(feeds).values()))
                                  - session.run(None, feeds)[0]).max())
        for threads in args.thread_counts:
            times = {kind: median_latency(kiln_runner(path, feeds, threads), args.iterations) * 1e3
                     for kind, path in (("static", static), ("dynamic", dynamic))}
            rows[f"{size}x{threads}"] = {"size": size, "threads": threads, "max_abs_difference_vs_ort": difference,
                                         **times}
            print(f"{size}x{size}, {threads} thread(s): static {times['static']:.2f} ms, dynamic "
                  f"{times['dynamic']:.2f} ms", flush=True)
    return rows


def markdown(report: dict) -> str:
    low, high = report["bounds"]
    return markdown_table(
        f"MobileNetV2, image size {low}..{high} x {low}..{high} (one artifact) against static compiles",
        ["size", "threads", "static ms", "dynamic ms", "dynamic / static", "max abs diff vs ORT"],
        [[str(row["size"]), str(row["threads"]), f"{row['static']:.2f}", f"{row['dynamic']:.2f}",
          ratio(row["dynamic"], row["static"]), f"{row['max_abs_difference_vs_ort']:.1e}"]
         for row in report["rows"].values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bounds", type=int, nargs=2, default=[96, 224])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 160, 96])
    parser.add_argument("--threads", nargs="+", default=["1", "all"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("compare-results"))
    args = parser.parse_args()
    args.thread_counts = sorted({os.cpu_count() if t == "all" else int(t) for t in args.threads})
    with tempfile.TemporaryDirectory() as directory:
        rows = measure(args, Path(directory))
    report = {"bounds": args.bounds, "rows": rows}
    write_report(report, markdown(report), args.out, "dynamic_resolution")


if __name__ == "__main__":
    main()
