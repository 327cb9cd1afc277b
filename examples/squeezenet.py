"""Compile SqueezeNet (shipped inside the onnx wheel, no download) to native code with Kiln's
cpu target, load the artifact in the runtime and run it: prints the top classes and the timings.

The "light" zoo models carry constant weights (to stay small), so all classes score alike.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

import compiler
import runtime

MODEL = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"


def main(target: str = "cpu") -> None:
    start = time.perf_counter()
    artifact = compiler.compile(str(MODEL), target=target)
    compile_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as directory:
        path = artifact.save(Path(directory) / "squeezenet.kiln")
        start = time.perf_counter()
        model = runtime.load(path)
        load_seconds = time.perf_counter() - start
        image = np.random.default_rng(0).standard_normal(model.inputs[0].shape).astype(np.float32)
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            outputs = model.infer({model.inputs[0].name: image})
            timings.append(time.perf_counter() - start)
    scores = next(iter(outputs.values())).reshape(-1)
    top = np.argsort(scores)[::-1][:5]
    print(f"model   {MODEL.name}: inputs {[(i.name, i.shape) for i in model.inputs]}")
    print(f"output  {model.outputs[0].name}: shape {list(next(iter(outputs.values())).shape)}, "
          f"top-5 classes {top.tolist()} scores {np.round(scores[top], 5).tolist()}")
    print(f"timing  compile {compile_seconds:.2f} s, load {load_seconds * 1e3:.1f} ms, "
          f"first inference {timings[0] * 1e3:.1f} ms, median of 5 {np.median(timings) * 1e3:.1f} ms (target {target})")


if __name__ == "__main__":
    main()
