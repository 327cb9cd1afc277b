"""The dynamic-batch encoder beside the same encoder compiled static, in one run (issue 7's benchmark).

    python bench/dynamic_batch.py [--bound 8] [--batches 1 4 8] [--sequences 128] [--sequence-bound 512]
                                  [--threads 1 all] [--target cpu|gpu] [--device NAME] [--iterations 20]
                                  [--out DIR]

The BERT-style encoder of bench/models.py (4 layers, hidden 256) is compiled once with a dynamic
batch 1..BOUND (compiler/dynamic_batch.py), with `--sequence-bound` also a dynamic sequence
1..SEQUENCE_BOUND (cpu; compiler/dynamic_extent.py), and once per measured (batch, sequence) as a
static model; each runs on both, and the table gives the median latencies and dynamic / static
(target <= 1.2 at sequence 128). `--target gpu` does the same on an OpenCL device (`--device`: as
runtime.load; the thread column is then meaningless and shows 1). Writes DIR/dynamic_batch.md and .json.
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
from bench.gpu_vs_cpu import gpu_runner  # noqa: E402
from bench.models import bert_encoder  # noqa: E402


def measure(args, directory: Path) -> dict:
    import compiler

    encoder = bert_encoder(dynamic=True)
    names = ("input_ids", "attention_mask")
    options = {"device": args.device} if args.target == "gpu" else {}
    dynamic = {}
    for sequence in args.sequences:
        length = f"1..{args.sequence_bound}" if args.sequence_bound else sequence
        if length not in dynamic:
            dynamic[length] = compiler.compile(encoder.model, target=args.target, shapes={
                name: [f"1..{args.bound}", length] for name in names}, **options).save(directory / f"dynamic{sequence}.kiln")
    rows = {}
    for sequence in args.sequences:
        for batch in args.batches:
            static = compiler.compile(encoder.model, target=args.target, shapes={
                name: [batch, sequence] for name in names}, **options).save(directory / f"static_{batch}x{sequence}.kiln")
            feeds = encoder.make_inputs(np.random.default_rng(batch), batch=batch, sequence=sequence)
            both = (("static", static), ("dynamic", dynamic[f"1..{args.sequence_bound}" if args.sequence_bound
                                                             else sequence]))
            for threads in args.thread_counts:
                run = (lambda path: gpu_runner(path, feeds, args.device)) if args.target == "gpu" else \
                    (lambda path: kiln_runner(path, feeds, threads))
                times = {kind: median_latency(run(path), args.iterations) * 1e3 for kind, path in both}
                rows[f"{batch}x{sequence}x{threads}"] = {"batch": batch, "sequence": sequence, "threads": threads,
                                                        **times}
                print(f"batch {batch}, sequence {sequence}, {threads} thread(s): static {times['static']:.2f} ms, "
                      f"dynamic {times['dynamic']:.2f} ms", flush=True)
    return rows


def markdown(report: dict) -> str:
    sequence = f"dynamic sequence 1..{report['sequence_bound']}" if report["sequence_bound"] else "static sequence"
    return markdown_table(
        f"BERT-style encoder, dynamic batch 1..{report['bound']}, {sequence}, target {report['target']}",
        ["batch", "sequence", "threads", "static ms", "dynamic ms", "dynamic / static (<= 1.2)"],
        [[str(row["batch"]), str(row["sequence"]), str(row["threads"]), f"{row['static']:.2f}",
          f"{row['dynamic']:.2f}", ratio(row["dynamic"], row["static"])] for row in report["rows"].values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bound", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--sequences", type=int, nargs="+", default=[128])
    parser.add_argument("--sequence-bound", type=int, default=None,
                        help="cpu: compile the sequence dynamic too, 1..this bound")
    parser.add_argument("--threads", nargs="+", default=["1", "all"])
    parser.add_argument("--target", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--device", default=None, help="gpu: OpenCL device index or name (default: as runtime.load)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("compare-results"))
    args = parser.parse_args()
    args.thread_counts = [1] if args.target == "gpu" else \
        sorted({os.cpu_count() if t == "all" else int(t) for t in args.threads})
    with tempfile.TemporaryDirectory() as directory:
        rows = measure(args, Path(directory))
    report = {"sequence_bound": args.sequence_bound, "bound": args.bound, "target": args.target, "rows": rows}
    write_report(report, markdown(report), args.out, "dynamic_batch")


if __name__ == "__main__":
    main()
