"""SNR of the gna target against fp32 (onnxruntime) on the speech-style models of tests/gna/models.py,
with int16 and int8 weights, and top-1 agreement over seeded random inputs.

    .venv/bin/python -m bench.gna_accuracy [--inputs 1000]

Targets (issue 6): SNR >= 35 dB with int16 weights, >= 20 dB with int8; top-1 agreement >= 99 %.
Inputs are standard-normal (the scale of normalized speech features); the compile uses computed
ranges (its own seeded samples), not these inputs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

import runtime
from compiler.codegen.gna.report import sqnr_db
from compiler.driver import compile
from tests.gna.models import lstm_kws, mlp, tdnn

MODELS = {"mlp (5 affine, 440-256x4-12)": mlp, "tdnn (3 dilated conv1d + 2 affine, 40x48)": tdnn,
          "lstm kws (2 LSTM 64 + affine, 49x40 frames)": lstm_kws}


def measure(model, weights: str, count: int) -> dict:
    session = ort.InferenceSession(model.SerializeToString())
    start = time.perf_counter()
    loaded = runtime.load(compile(model, "gna", gna_weights=weights))
    compile_s = time.perf_counter() - start
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    xs = np.random.default_rng(1234).standard_normal((count, *shape)).astype(np.float32)
    reference = np.stack([session.run(None, {"x": x})[0] for x in xs]).reshape(count, -1)
    start = time.perf_counter()
    got = np.stack([loaded.infer({"x": x})["y"] for x in xs]).reshape(count, -1)
    infer_ms = (time.perf_counter() - start) / count * 1e3
    return {"snr": sqnr_db(reference, got), "top1": float(np.mean(reference.argmax(1) == got.argmax(1))),
            "compile_s": compile_s, "infer_ms": infer_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000, help="seeded random inputs per model (default 1000)")
    args = parser.parse_args()
    print(f"| model | weights | SNR dB | top-1 agreement | compile s | infer ms |  ({args.inputs} inputs)")
    print("|---|---|---|---|---|---|")
    for name, build in MODELS.items():
        for weights in ("int16", "int8"):
            r = measure(build(), weights, args.inputs)
            print(f"| {name} | {weights} | {r['snr']:.1f} | {100 * r['top1']:.1f} % | {r['compile_s']:.2f} | "
                  f"{r['infer_ms']:.3f} |")


if __name__ == "__main__":
    main()
