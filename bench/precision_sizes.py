"""Artifact sizes at precision fp16 against fp32, with the fp16 report's output error.

    python bench/precision_sizes.py [--models light_resnet50 mobilenet_v2 bert_encoder] [--target cpu]
                                    [--samples 4]

For each model it compiles the fp32 and the fp16 artifact for the target (fp16 checked on
`--samples` seeded random inputs), prints the total bytes of each artifact's files, the ratio
(issue 8's goal: <= 0.55), the weight bytes and the output error from report.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare import load_model  # noqa: E402
from compiler.driver import compile  # noqa: E402

MODELS = ("light_resnet50", "mobilenet_v2", "bert_encoder")


def artifact_bytes(artifact) -> int:
    """What the saved artifact directory holds: every payload file plus the manifest."""
    return sum(len(data) for data in artifact.files.values()) + len(artifact.manifest_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--target", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--samples", type=int, default=4, help="seeded inputs the fp16 check runs (default 4)")
    args = parser.parse_args(argv)
    print("| model | fp32 bytes | fp16 bytes | ratio | weights fp32 -> stored | kept | output error |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        model = load_model(name).model
        full = compile(model, args.target)
        half = compile(model, args.target, precision="fp16", calibration_size=args.samples)
        report = json.loads(half.files["report.json"])
        weights, error = report["weights"], report["output_error"] or {}
        snr = "n/a (exact)" if error.get("snr_db") is None else f"{error['snr_db']:.1f} dB"
        error_text = error.get("not_measured") or (f"max abs {error['max_abs']:.3g}, rel {error['max_relative']:.3g}, "
                                                   f"SNR {snr}")
        kept = len(report["kept_nodes"]) + len(report["kept_weights"])
        print(f"| {name} | {artifact_bytes(full):,} | {artifact_bytes(half):,} | "
              f"{artifact_bytes(half) / artifact_bytes(full):.3f} | {weights['float32_bytes']:,} -> "
              f"{weights['stored_bytes']:,} | {kept} | {error_text} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
