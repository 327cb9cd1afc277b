"""Kiln's gpu target on an OpenCL GPU beside PyTorch eager (fp32, TF32 off) on the same GPU, same networks.

    python bench/gpu_vs_torch.py [--models light_resnet50 mobilenet_v2 bert_encoder] [--device nvidia]
                                 [--torch-device cuda] [--iterations 50] [--out DIR]

The peer of the GPU performance target: the same ONNX graph (same weights) run by PyTorch eager
through bench/torch_graph.py, its inputs already on the device, timed to torch.cuda.synchronize().
Kiln's figure is runtime.load(...).infer() end to end (inputs uploaded, outputs read back); the sum
of its kernels' device times (OpenCL profiling events) is reported beside it, with the achieved
GFLOP/s of the Conv/Gemm/MatMul kernels and the slowest kernels. Both outputs are checked against
onnxruntime on the CPU (largest absolute difference). Writes DIR/gpu_vs_torch.md and .json.
On a machine with no CUDA, `--torch-device cpu` runs the same comparison against PoCL, for testing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare import BUILT, LIGHT, load_model, median_latency, ratio, write_report  # noqa: E402
from bench.gpu_vs_cpu import device_facts  # noqa: E402

DEFAULT_MODELS = ("light_resnet50", "mobilenet_v2", "bert_encoder")
SLOWEST = 8  # kernels listed per model in the JSON report


def torch_runner(model, feeds: dict, device: str):
    """PyTorch eager running `model`'s graph: (run, output) with fp32 matmuls and convolutions (no TF32)."""
    import torch

    from bench.torch_graph import OnnxModule
    from bench.trained_models import fold_constant_of_shape

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    module = OnnxModule(fold_constant_of_shape(model)).to(device).eval()
    inputs = {name: torch.from_numpy(value).to(device) for name, value in feeds.items()}
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run():
        with torch.inference_mode():
            result = module(inputs)
        synchronize()
        return result

    return run, run().float().cpu().numpy()


ORT_IR_VERSION = 10  # what every onnxruntime since 1.20 reads; a newer onnx writes a newer IR by default


def onnxruntime_output(model, feeds: dict) -> np.ndarray:
    import onnx
    import onnxruntime as ort

    readable = onnx.ModelProto()
    readable.CopyFrom(model)
    readable.ir_version = min(readable.ir_version, ORT_IR_VERSION)
    session = ort.InferenceSession(readable.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def kernel_profile(model, feeds: dict, iterations: int) -> dict:
    """Device milliseconds of all kernels, GFLOP/s of the heavy ones, and the slowest kernels."""
    from runtime.benchmark import benchmark

    kernels = benchmark(model, feeds, iterations=iterations, profile=True).profile()
    heavy = [k for k in kernels if k.flops]
    heavy_ms = sum(k.milliseconds for k in heavy)
    return {"kernels_ms": sum(k.milliseconds for k in kernels), "kernels": len(kernels),
            "heavy_gflops_per_second": sum(k.flops for k in heavy) / heavy_ms * 1e-6 if heavy_ms else None,
            "heavy_share": heavy_ms / (sum(k.milliseconds for k in kernels) or 1.0),
            "slowest": [{"op_type": k.op_type, "nodes": list(k.nodes)[:3], "shapes": k.shapes,
                         "ms": k.milliseconds, "gflops_per_second": k.gflops_per_second}
                        for k in kernels[:SLOWEST]]}


def measure(name: str, directory: Path, args) -> dict:
    import compiler
    import runtime

    bench = load_model(name)
    feeds = bench.make_inputs(np.random.default_rng(0))
    start = time.perf_counter()
    artifact = compiler.compile(bench.model, target="gpu", device=args.device).save(directory / f"{name}.kiln")
    entry = {"compile_s": time.perf_counter() - start}
    model = runtime.load(artifact, device=args.device)
    reference = onnxruntime_output(bench.model, feeds)
    ours = next(iter(model.infer(feeds).values()))
    run_torch, theirs = torch_runner(bench.model, feeds, args.torch_device)
    entry["max_abs_difference"] = {"kiln": float(np.max(np.abs(ours - reference))),
                                   "torch": float(np.max(np.abs(theirs - reference)))}
    entry["kiln_ms"] = median_latency(lambda: model.infer(feeds), args.iterations) * 1e3
    entry["torch_ms"] = median_latency(run_torch, args.iterations) * 1e3
    entry["profile"] = kernel_profile(model, feeds, max(3, args.iterations // 5))
    print(f"{name}: kiln {entry['kiln_ms']:.3f} ms (kernels {entry['profile']['kernels_ms']:.3f} ms), "
          f"torch {entry['torch_ms']:.3f} ms", flush=True)
    return entry


def markdown(report: dict) -> str:
    lines = [f"OpenCL device: {report['device']}; torch {report['torch']} on {report['torch_device']} "
             f"(fp32, TF32 off); {report['iterations']} iterations, median ms", "",
             "| model | Kiln gpu | Kiln kernels | torch eager | Kiln/torch | heavy-kernel GFLOP/s | kernels | "
             "max abs diff vs ORT (Kiln / torch) | compile s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in report["models"].items():
        if "error" in entry:
            lines.append(f"| {name} | failed: {entry['error'].splitlines()[0][:200]} |" + " |" * 7)
            continue
        profile, difference = entry["profile"], entry["max_abs_difference"]
        rate = profile["heavy_gflops_per_second"]
        lines.append(f"| {name} | {entry['kiln_ms']:.3f} | {profile['kernels_ms']:.3f} | {entry['torch_ms']:.3f} | "
                     f"{ratio(entry['kiln_ms'], entry['torch_ms'])} | {f'{rate:.0f}' if rate else '-'} | "
                     f"{profile['kernels']} | {difference['kiln']:.1e} / {difference['torch']:.1e} | "
                     f"{entry['compile_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(LIGHT) + list(BUILT))
    parser.add_argument("--device", default=None, help="OpenCL device index or name (default: as runtime.load)")
    parser.add_argument("--torch-device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("gpu-vs-torch-results"))
    args = parser.parse_args()
    report = {**device_facts(args.device), "torch": torch.__version__, "torch_device":
              torch.cuda.get_device_name() if args.torch_device.startswith("cuda") else args.torch_device,
              "iterations": args.iterations, "models": {}}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            try:
                report["models"][name] = measure(name, Path(directory), args)
            except Exception as error:  # one model's failure (a driver's compiler, say) must not lose the others
                print(f"{name}: failed: {type(error).__name__}: {error}", flush=True)
                report["models"][name] = {"error": f"{type(error).__name__}: {str(error)[:2000]}"}
    write_report(report, markdown(report), args.out, "gpu_vs_torch")


if __name__ == "__main__":
    main()
