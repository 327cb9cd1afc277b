"""Integer multiply-accumulates per second of the bit-exact GNA executor (runtime/gna), on one core.

    python bench/gna_executor_throughput.py [--seconds 2] [--threads 1]

Builds GNA streams with the encoder (random weights, PWL activations), runs each in exact mode
and prints MAC/s: a 5-layer 1024-wide MLP at batch 8 and 1 (int16 and int8 weights), a TDNN
convolution and a 49-frame recurrent layer. BLAS threads are pinned to --threads before numpy
loads (the issue's target is >= 1 G integer MAC/s on one core for affine-heavy models).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path


def _streams(np):
    from compiler.codegen.gna.encoder import encode
    from compiler.codegen.gna.layers import Affine, Buffer, Conv1D, Endpoint, Program, Pwl, Recurrent
    from runtime.gna.format import Section

    rng = np.random.default_rng(0)
    relu = Pwl((-2**31, 0), (0, 0), (0, 1), (0, 12))

    def weights(shape, dtype=np.int16):
        bound = 127 if dtype == np.int8 else 2000
        return rng.integers(-bound, bound, shape).astype(dtype)

    def mlp(batch, dtype, width=1024, depth=5):
        buffers = [Buffer(f"h{i}", batch * width * 2) for i in range(depth + 1)]
        multipliers = rng.integers(1, 256, width).astype(np.uint8) if dtype == np.int8 else None
        layers = [Affine(f"fc{i}", buffers[i], buffers[i + 1], weights((width, width), dtype),
                         np.zeros(width, np.int32), multipliers, relu, batch=batch) for i in range(depth)]
        return Program((Endpoint("x", buffers[0], (batch, width), 1.0),),
                       (Endpoint("y", buffers[-1], (batch, width), 1.0),), tuple(layers))

    def tdnn(length=128, channels=64, filters=256, kernel=8):
        x, y = Buffer("x", length * channels * 2), Buffer("y", length * filters * 2)
        layer = Conv1D("tdnn", x, y, weights((filters, kernel, channels)), np.zeros(filters, np.int32), pwl=relu,
                       length=length, dilation=2)
        out = length - 2 * (kernel - 1)
        return Program((Endpoint("x", x, (length, channels), 1.0),), (Endpoint("y", y, (out, filters), 1.0),),
                       (layer,))

    def recurrent(frames=49, inputs=40, outputs=256):
        x, y = Buffer("x", frames * inputs * 2), Buffer("y", frames * outputs * 2)
        layer = Recurrent("rnn", x, y, weights((outputs, inputs + outputs)), np.zeros(outputs, np.int32), pwl=relu,
                          state=Buffer("h", outputs * 2, Section.STATE), frames=frames)
        return Program((Endpoint("x", x, (frames, inputs), 1.0),), (Endpoint("y", y, (frames, outputs), 1.0),),
                       (layer,))

    return {"mlp 5x1024 batch 8 int16": encode(mlp(8, np.int16)), "mlp 5x1024 batch 8 int8": encode(mlp(8, np.int8)),
            "mlp 5x1024 batch 1 int16": encode(mlp(1, np.int16)), "tdnn conv1d 128x64 -> 256, k8 d2": encode(tdnn()),
            "recurrent 49 frames 40+256 -> 256": encode(recurrent())}


def macs(stream) -> int:
    """Multiply-accumulates of one inference."""
    total = 0
    for layer in stream.layers:
        if "weights" in layer.operands:
            weights, output = layer.operands["weights"], layer.operands["output"]
            per_output = 1 if len(weights.shape) == 1 else math.prod(weights.shape[1:])  # DIAGONAL: one product
            total += per_output * math.prod(output.shape)
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time to measure each stream (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1: one core)")
    args = parser.parse_args(argv)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np

    import runtime.gna

    print(f"GNA exact executor, {args.threads} BLAS thread(s), numpy {np.__version__}")
    print(f"{'stream':<36} {'MACs':>12} {'median ms':>10} {'G MAC/s':>8}")
    for name, data in _streams(np).items():
        model = runtime.gna.load(data)
        feeds = {e.name: np.random.default_rng(1).integers(-3000, 3000, e.shape).astype(np.int16)
                 for e in model.stream.inputs}
        model.infer_raw(feeds)
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < args.seconds or len(times) < 3:
            begin = time.perf_counter()
            model.infer_raw(feeds)
            times.append(time.perf_counter() - begin)
        count, median = macs(model.stream), float(np.median(times))
        print(f"{name:<36} {count:>12,} {median * 1e3:>10.2f} {count / median / 1e9:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
