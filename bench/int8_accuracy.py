"""Top-1 agreement of Kiln int8 with Kiln fp32 on seeded inputs, for the CNN benchmark models.

    python bench/int8_accuracy.py [--models light_resnet50 mobilenet_v2] [--inputs 500] [--trained]
                                  [--calibration-size 32] [--calibration-method minmax] [--out DIR]

Issue 8's target: >= 99 % agreement on 500 seeded inputs. Calibration samples come from the same
input maker with another seed (bench/int8_compare.py), so the inputs measured are not the ones
calibrated on. Also reports the output SNR (dB) and the layer the int8 report ranks worst.
Without --trained the networks are the benchmark's own (random or constant weights: no real
decision margins); --trained uses them trained on the synthetic image task
(bench/trained_models.py, needs the `train` extra the first time), whose images are the inputs,
and also reports the fp32 model's accuracy on the true labels.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare import load_model, write_report  # noqa: E402
from bench.int8_compare import add_calibration_arguments, calibration_samples, compile_int8  # noqa: E402
from bench.models import BenchModel  # noqa: E402

CNNS = ("light_resnet50", "mobilenet_v2")


def model_and_inputs(name: str, trained: bool) -> tuple[BenchModel, Callable]:
    """The model and its input maker as rng -> (feeds, labels), labels None where there are none."""
    if trained:
        from bench.trained_models import labelled_inputs, trained_model

        bench = trained_model(name)
        return bench, labelled_inputs(bench.model)
    bench = load_model(name)
    return bench, lambda rng: (bench.make_inputs(rng), None)


def measure(name: str, directory: Path, args) -> dict:
    import compiler
    import runtime

    bench, draw = model_and_inputs(name, args.trained)
    fp32 = runtime.load(compiler.compile(bench.model, target="cpu"))
    int8_path = compile_int8(bench, calibration_samples(bench, args.calibration_size), directory,
                             args.calibration_method)
    int8 = runtime.load(int8_path)
    rng = np.random.default_rng(0)
    agree, correct, signal, noise = 0, 0, 0.0, 0.0
    for _ in range(args.inputs):
        feeds, labels = draw(rng)
        expected = next(iter(fp32.infer(feeds).values())).reshape(-1)
        got = next(iter(int8.infer(feeds).values())).reshape(-1)
        agree += int(np.argmax(expected) == np.argmax(got))
        correct += int(labels is not None and np.argmax(expected) == labels[0])
        signal += float(np.sum(expected.astype(np.float64) ** 2))
        noise += float(np.sum((got.astype(np.float64) - expected) ** 2))
    worst = json.loads((int8_path / "report.json").read_text())["layers"][0]
    entry = {"top1_agreement": agree / args.inputs, "snr_db": 10 * np.log10(signal / noise) if noise else None,
             "worst_layer": worst, "fp32_accuracy": correct / args.inputs if args.trained else None}
    accuracy = "" if entry["fp32_accuracy"] is None else f", fp32 accuracy {entry['fp32_accuracy']:.1%}"
    print(f"{name}: top-1 agreement {entry['top1_agreement']:.1%}{accuracy} over {args.inputs} inputs", flush=True)
    return entry


def markdown(report: dict) -> str:
    source = "synthetic images, trained models" if report["trained"] else "seeded inputs"
    lines = [f"{report['inputs']} {source}; calibration: {report['calibration_size']} seeded samples "
             f"({report['calibration_method']})", "",
             "| model | top-1 agreement (>= 99 %) | fp32 accuracy | output SNR dB | worst layer (local SQNR dB) |",
             "|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        worst = entry["worst_layer"]
        snr = "exact" if entry["snr_db"] is None else f"{entry['snr_db']:.1f}"
        local = "exact" if worst["local_sqnr_db"] is None else f"{worst['local_sqnr_db']:.1f}"
        accuracy = "n/a" if entry["fp32_accuracy"] is None else f"{entry['fp32_accuracy']:.1%}"
        lines.append(f"| {name} | {entry['top1_agreement']:.1%} | {accuracy} | {snr} | {worst['layer']} ({local}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CNNS), choices=list(CNNS))
    parser.add_argument("--inputs", type=int, default=500)
    parser.add_argument("--trained", action="store_true",
                        help="use the models trained on the synthetic image task (bench/trained_models.py)")
    add_calibration_arguments(parser)
    args = parser.parse_args()
    report = {"inputs": args.inputs, "trained": args.trained, "calibration_size": args.calibration_size,
              "calibration_method": args.calibration_method, "models": {}}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            report["models"][name] = measure(name, Path(directory), args)
    write_report(report, markdown(report), args.out, "int8_accuracy")


if __name__ == "__main__":
    main()
