"""Kiln's cpu target beside ONNX Runtime (and OpenVINO when installed), in one run.

    python bench/cpu_vs_peers.py [--models light_resnet50 light_squeezenet] [--iterations 20] [--threads N]

Prints, per model: Kiln compile time; time to first inference in a fresh process (imports +
load + first run; for ORT session creation + first run, for OpenVINO compile_model + first
infer); steady-state median latency; and the ratios Kiln / peer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_INFERENCE = {
    "kiln": """
import time; start = time.perf_counter()
import numpy as np, runtime
model = runtime.load({artifact!r}{threads_arg})
info = model.inputs[0]
model.infer({{info.name: np.zeros(info.shape, np.float32)}})
print(time.perf_counter() - start)
""",
    "onnxruntime": """
import time; start = time.perf_counter()
import numpy as np, onnxruntime as ort
options = ort.SessionOptions()
{ort_threads}
session = ort.InferenceSession({model!r}, options, providers=["CPUExecutionProvider"])
info = session.get_inputs()[0]
session.run(None, {{info.name: np.zeros(info.shape, np.float32)}})
print(time.perf_counter() - start)
""",
    "openvino": """
import time; start = time.perf_counter()
import numpy as np, openvino as ov
compiled = ov.Core().compile_model({model!r}, "CPU"{ov_threads})
request = compiled.create_infer_request()
request.infer({{0: np.zeros(list(compiled.inputs[0].shape), np.float32)}})
print(time.perf_counter() - start)
""",
}


def first_inference(peer: str, **fields) -> float | None:
    code = FIRST_INFERENCE[peer].format(**fields)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return float(result.stdout.strip().splitlines()[-1])


def median_latency(run, iterations: int) -> float:
    run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def steady_state(model_path: str, artifact: Path, iterations: int, threads: int | None) -> dict:
    import numpy as np
    import onnxruntime as ort

    import runtime

    kiln = runtime.load(artifact, num_threads=threads)
    info = kiln.inputs[0]
    x = np.random.default_rng(0).standard_normal(info.shape).astype(np.float32)
    results = {"kiln": median_latency(lambda: kiln.infer({info.name: x}), iterations)}
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    results["onnxruntime"] = median_latency(lambda: session.run(None, {info.name: x}), iterations)
    try:
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        compiled = ov.Core().compile_model(model_path, "CPU", config)
        request = compiled.create_infer_request()
        results["openvino"] = median_latency(lambda: request.infer({0: x}), iterations)
    except ImportError:
        pass
    return results


def main() -> None:
    import onnx

    import compiler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["light_resnet50", "light_squeezenet"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: all cores)")
    args = parser.parse_args()
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    report = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            model_path = str(light / f"{name}.onnx")
            start = time.perf_counter()
            artifact = compiler.compile(model_path, target="cpu").save(Path(directory) / f"{name}.kiln")
            compile_seconds = time.perf_counter() - start
            fields = {"artifact": str(artifact), "model": model_path,
                      "threads_arg": f", num_threads={args.threads}" if args.threads else "",
                      "ort_threads": f"options.intra_op_num_threads = {args.threads}" if args.threads else "",
                      "ov_threads": f', {{"INFERENCE_NUM_THREADS": {args.threads}}}' if args.threads else ""}
            first = {peer: first_inference(peer, **fields) for peer in FIRST_INFERENCE}
            latency = steady_state(model_path, artifact, args.iterations, args.threads)
            report[name] = {"compile_s": compile_seconds, "first_inference_s": first, "median_latency_s": latency}
            print(f"{name}: compile {compile_seconds:.2f} s")
            for peer, seconds in first.items():
                ratio = f" (kiln/peer {first['kiln'] / seconds:.2f}x)" if seconds and peer != "kiln" and first["kiln"] else ""
                print(f"  first inference  {peer:12} " + ("not available" if seconds is None else f"{seconds:.3f} s{ratio}"))
            for peer, seconds in latency.items():
                ratio = f" (kiln/peer {latency['kiln'] / seconds:.2f}x)" if peer != "kiln" else ""
                print(f"  median latency   {peer:12} {seconds * 1e3:8.2f} ms{ratio}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
