"""The `kiln` command: compile, run, bench, info, check, diff, viz and disasm.

Every failure a user can cause (bad model, bad artifact, bad input, unsupported op) is
printed as one plain message and a non-zero exit code, never as a Python traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

# 1: `check` found nodes the target cannot compile; 4: `diff` found an output over tolerance.
EXIT_OK, EXIT_UNSUPPORTED, EXIT_ERROR, EXIT_INTERNAL, EXIT_MISMATCH = 0, 1, 2, 3, 4


class UsageError(ValueError):
    """A command-line argument is wrong."""


def _user_errors() -> tuple:
    from compiler.calibration_data import CalibrationError
    from compiler.codegen.gna.encoder import GnaEncodeError
    from compiler.codegen.gna.lowering import GnaLoweringError
    from compiler.driver import UnsupportedByTargetError
    from compiler.dynamic_batch import DynamicBatchError
    from compiler.dynamic_extent import DynamicExtentError
    from compiler.ir.verifier import VerificationError
    from compiler.ops.interpreter import KernelError, UnsupportedOpError
    from compiler.ops.onnx_semantics import OpInferenceError
    from compiler.passes.manager import PassError
    from compiler.specialize import SpecializationError
    from compiler.preprocess import PreprocessError
    from compiler.quantization.driver import QuantizationTargetError
    from compiler.quantization.ranges import RangeError
    from compiler.state import StateError
    from compiler.viz import VizError
    from frontends.onnx.importer import ModelImportError
    from runtime import ArtifactError, InputError

    return (UsageError, ModelImportError, UnsupportedByTargetError, ArtifactError, InputError, VerificationError,
            OpInferenceError, KernelError, UnsupportedOpError, PassError, SpecializationError, StateError,
            PreprocessError, VizError, FileNotFoundError, FileExistsError, CalibrationError, GnaEncodeError,
            GnaLoweringError, QuantizationTargetError, RangeError, DynamicBatchError, DynamicExtentError)


# ----- compile --------------------------------------------------------------------------
def _instruments(args):
    from compiler.passes.manager import DumpInstrument, TimingInstrument, VerifyInstrument

    instruments = []
    timing = TimingInstrument() if args.time_passes else None
    if timing:
        instruments.append(timing)
    if args.verify_each:
        instruments.append(VerifyInstrument())
    if args.dump_after:
        passes = None if "all" in args.dump_after else args.dump_after
        instruments.append(DumpInstrument(args.dump_dir, passes, formats=args.dump_format.split(",")))
    return instruments, timing


def cmd_compile(args) -> int:
    from compiler.driver import compile

    instruments, timing = _instruments(args)
    start = time.perf_counter()
    machine = {key: value for key in ("triple", "cpu", "features", "calibration", "gna_weights", "generation",
                                      "fallback", "precision", "calibration_size", "calibration_method",
                                      "calibration_percentile", "ignore")
               if (value := getattr(args, key))}
    artifact = compile(args.model, args.target, disable=args.disable, instruments=instruments,
                       shapes=_parse_shapes(args.shape), freeze=_parse_inputs(args.freeze, "--freeze"),
                       state=_parse_state(args.state),
                       initial_state=_parse_inputs(args.initial_state, "--initial-state"),
                       progress=not args.quiet,
                       specialize=[_parse_shapes(group, "--specialize") for group in args.specialize] or None,
                       cache_dir=args.cache_dir or os.environ.get("KILN_CACHE_DIR") or None,
                       preprocess=_parse_preprocess(args) or None, report=args.report,
                       **machine)
    path = artifact.save(args.output)
    if not args.quiet:
        print(f"compiled {args.model} for {args.target} in {time.perf_counter() - start:.2f} s -> {path}")
        if "report.json" in artifact.files:
            report = json.loads(artifact.files["report.json"])
            if report.get("kind") == "fp16":
                from compiler.precision.fp16_report import format_report
            elif report.get("kind") == "int8":
                from compiler.quantization.report import format_report
            else:
                from compiler.codegen.gna.report import format_report
            print(format_report(report))
    if timing:
        print("pass timings:\n" + timing.summary())
    return EXIT_OK


def _positive_int(text: str) -> int:
    """argparse type of counts that must be at least 1 (0 would silently mean "the default")."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count: give an integer >= 1")
    return value


def _parse_dim(dim: str, bounds_allowed: bool) -> int | str:
    """An integer size, or (--shape) LOW..HIGH bounds of a dynamic dim, LOW.. unbounded (a batch only):
    compiler/dynamic_batch.py for the leading dim, compiler/dynamic_extent.py for one past it."""
    if bounds_allowed and ".." in dim:
        low, _, high = dim.partition("..")
        return f"{int(low)}..{int(high) if high.strip() else ''}"
    return int(dim)


def _parse_shapes(pairs: list[str], flag: str = "--shape") -> dict:
    shapes = {}
    for pair in pairs:
        name, sep, dims = pair.partition("=")
        try:
            shapes[name] = [_parse_dim(dim, flag == "--shape") for dim in dims.split(",")] if sep and dims else None
        except ValueError:
            shapes[name] = None
        if not sep or shapes[name] is None:
            raise UsageError(f"{flag} {pair!r}: use NAME=D0,D1,... with integer sizes, e.g. input=1,3,224,224"
                             + (" (LOW..HIGH for a dynamic dim, LOW.. for an unbounded batch, e.g. ids=1..8,1..128)"
                                if flag == "--shape"
                                else ""))
    return shapes


# ----- run ------------------------------------------------------------------------------
def _parse_inputs(pairs: list[str], flag: str = "--input") -> dict:
    feeds = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep:
            raise UsageError(f"{flag} {pair!r}: use NAME=FILE.npy")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise UsageError(f"{flag} {name}: cannot read {path!r} as a .npy file ({error})") from None
    return feeds


def _parse_state(pairs: list[str]) -> dict:
    state = {}
    for pair in pairs:
        name, sep, output = pair.partition("=")
        if not sep or not name or not output:
            raise UsageError(f"--state {pair!r}: use INPUT=OUTPUT (the output holds the input's next value)")
        state[name] = output
    return state


_TYPE_ALIASES = {"u8": "uint8", "i8": "int8", "f16": "float16", "f32": "float32"}


def _pairs(flag: str, pairs: list[str], convert) -> dict:
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            result[name] = convert(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise UsageError(f"{flag} {pair!r}: use NAME=VALUE (see kiln compile --help)")
    return result


def _parse_preprocess(args) -> dict:
    """Preprocess per input from --input-type, --layout, --reverse-input-channels, --resize, --mean-values
    and --scale-values."""
    from compiler.preprocess import Preprocess

    numbers = lambda text: tuple(float(v) for v in text.split(","))  # noqa: E731
    steps = {"element_type": _pairs("--input-type", args.input_type, lambda t: _TYPE_ALIASES.get(t, t)),
             "layout": _pairs("--layout", args.layout, str.upper),
             "resize_from": _pairs("--resize", args.resize, lambda t: tuple(int(v) for v in t.split(","))),
             "mean": _pairs("--mean-values", args.mean_values, numbers),
             "scale": _pairs("--scale-values", args.scale_values, numbers),
             "reverse_channels": {name: True for name in args.reverse_input_channels}}
    names = sorted({name for values in steps.values() for name in values})
    return {name: Preprocess(**{step: values[name] for step, values in steps.items() if name in values})
            for name in names}


def _random_inputs(model, given: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feeds = dict(given)
    for info in model.inputs:
        if info.name in feeds:
            continue
        bounds = info.bounds or [None] * len(info.shape or ())
        shape = None if info.shape is None else [dim if isinstance(dim, int) else bound and (bound[1] or bound[0])
                                                 for dim, bound in zip(info.shape, bounds)]
        if info.kind != "tensor" or shape is None or not all(isinstance(d, int) for d in shape):
            raise UsageError(f"input {info.name!r} has shape {info.shape}: give it with --input {info.name}=FILE.npy")
        if info.dtype.startswith("float"):
            feeds[info.name] = rng.standard_normal(shape).astype(info.dtype)
        elif info.dtype == "bool":
            feeds[info.name] = rng.integers(0, 2, shape).astype(bool)
        elif info.dtype.startswith(("int", "uint")):
            feeds[info.name] = rng.integers(0, 10, shape).astype(info.dtype)
        else:
            raise UsageError(f"input {info.name!r} has dtype {info.dtype}: give it with --input {info.name}=FILE.npy")
    return feeds


def _file_name(value_name: str) -> str:
    """A tensor name made safe as a file name (ONNX names may hold '/' or ':')."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in value_name)


def _summary(value) -> str:
    if isinstance(value, list):
        return f"sequence of {len(value)}"
    if value is None:
        return "empty optional"
    array = np.asarray(value)
    head = np.array2string(array.reshape(-1)[:6], precision=5, separator=", ")
    return f"{array.dtype}{list(array.shape)} first values {head}"


def _load_model(source: str, target: str, threads: int | None, shapes: dict | None = None, **load_options):
    """A loaded model: an artifact directory, or an .onnx model compiled in memory first."""
    import runtime

    path = Path(source)
    if path.suffix == ".onnx" or path.is_file():
        from compiler.driver import compile

        return runtime.load(compile(str(path), target, shapes=shapes), num_threads=threads, **load_options)
    if shapes:
        raise UsageError("--shape applies when compiling an .onnx model; this artifact's shapes are fixed already")
    return runtime.load(path, num_threads=threads, **load_options)


def cmd_run(args) -> int:
    start = time.perf_counter()
    model = _load_model(args.artifact, args.target, args.threads)
    load_seconds = time.perf_counter() - start
    feeds = _random_inputs(model, _parse_inputs(args.input), args.seed)
    times = []
    for _ in range(max(1, args.iterations)):
        start = time.perf_counter()
        outputs = model.infer(feeds)
        times.append(time.perf_counter() - start)
    for name, value in outputs.items():
        print(f"output {name}: {_summary(value)}")
        if args.output_dir:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            np.save(Path(args.output_dir) / f"{_file_name(name)}.npy", np.asarray(value))
    print(f"target {model.target}: load {load_seconds * 1e3:.1f} ms, first inference {times[0] * 1e3:.1f} ms, "
          f"median of {len(times)} {np.median(times) * 1e3:.1f} ms")
    return EXIT_OK


# ----- bench ----------------------------------------------------------------------------
def _bench_limits(args) -> tuple[int | None, float | None]:
    """(iterations, seconds) to measure: -n or -t, by default 10 seconds."""
    if args.iterations is not None and args.iterations < 1 or args.time is not None and args.time <= 0:
        raise UsageError("-n/--iterations and -t/--time must be positive")
    if args.warmup < 0:
        raise UsageError("--warmup must be 0 or more")
    return args.iterations, 10.0 if args.iterations is None and args.time is None else args.time


def cmd_bench(args) -> int:
    from runtime.benchmark import Progress, benchmark, report_lines, throughput_benchmark

    iterations, seconds = _bench_limits(args)
    start = time.perf_counter()
    model = _load_model(args.model, args.target, args.threads, _parse_shapes(args.shape) or None,
                        performance_hint=args.hint, num_streams=args.streams)
    about = {"model": args.model, "target": model.target, "threads": model.num_threads, "streams": model.num_streams,
             "ready_seconds": time.perf_counter() - start}
    if args.profile and model.target not in ("cpu", "gpu"):
        raise UsageError(f"--profile times the kernels of cpu and gpu artifacts; this model is for target "
                         f"{model.target!r}")
    if args.profile and model.num_streams > 1:
        raise UsageError("--profile times the kernels of one stream; drop --hint throughput and --streams")
    feeds = _random_inputs(model, _parse_inputs(args.input), args.seed)
    progress = None if args.quiet else Progress(sys.stderr)
    if model.num_streams > 1:
        result = throughput_benchmark(model, feeds, warmup=args.warmup, iterations=iterations, seconds=seconds,
                                      progress=progress)
    else:
        result = benchmark(model, feeds, warmup=args.warmup, iterations=iterations, seconds=seconds,
                           profile=args.profile, progress=progress)
    if args.json:
        print(json.dumps({**about, **result.to_dict(args.top)}, indent=2))
    else:
        print("\n".join(report_lines(result, about, args.top)))
    return EXIT_OK


# ----- info and check -------------------------------------------------------------------
def cmd_info(args) -> int:
    from runtime.artifact_reader import read_artifact

    manifest = read_artifact(args.artifact, verify_all=args.verify).manifest
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"artifact {args.artifact}: target {manifest['target']}, compiler {manifest.get('compiler_version')}, "
          f"format {manifest['format_version']}")
    for kind in ("inputs", "outputs"):
        for entry in manifest[kind]:
            bounds = f", bounds {entry['bounds']}" if entry.get("bounds") else ""
            print(f"  {kind[:-1]:6} {entry['name']}: {json.dumps(entry['type'])}{bounds}")
    for index, part in enumerate(manifest.get("parts", [])):  # dispatch, hetero, auto and multi artifacts
        what = (f"reads {', '.join(part['inputs'])}; writes {', '.join(part['outputs'])}" if "inputs" in part else
                f"input shapes {json.dumps(part['input_shapes'])}" if "input_shapes" in part else "the whole model")
        print(f"  part   {index} on {part['target']}: {what}")
    plan = manifest.get("memory_plan")
    if plan:
        print(f"  memory plan: peak workspace {plan['workspace_bytes']} bytes, weights {plan['weights_bytes']} bytes, "
              f"{plan['kernels']} kernels")
    for name, entry in sorted(manifest["files"].items()):
        print(f"  file   {name}: {entry['size']} bytes, sha256 {entry['sha256'][:16]}...")
    return EXIT_OK


def cmd_check(args) -> int:
    from compiler.query import query_model

    report = query_model(args.model, None if args.target == "all" else args.target)
    if args.json:
        print(json.dumps({"model": args.model, "targets": report}, indent=2))
    for target, problems in ([] if args.json else report.items()):
        if problems:
            print(f"{args.model}: {len(problems)} node(s) not supported by target {target}:")
            for p in problems:
                print(f"  {p['node']} ({p['op']}): {p['reason']}")
        else:
            print(f"{args.model}: every node is supported by target {target}")
    return EXIT_UNSUPPORTED if any(report.values()) else EXIT_OK


def cmd_diff(args) -> int:
    from compiler.diff import diff_model, report_lines
    from compiler.driver import to_graph
    from runtime import TensorInfo

    graph = to_graph(args.model)
    signature = SimpleNamespace(inputs=[TensorInfo(name, graph.node(name).outputs[0].dtype,
                                                   graph.node(name).outputs[0].shape) for name in graph.inputs])
    feeds = _random_inputs(signature, _parse_inputs(args.input), args.seed)
    report = diff_model(args.model, args.target, feeds, reference=args.reference, rtol=args.rtol, atol=args.atol,
                        disable=args.disable)
    print(json.dumps(report.to_dict(), indent=1) if args.json else "\n".join(report_lines(report)))
    return EXIT_OK if report.first_mismatch is None else EXIT_MISMATCH


def cmd_viz(args) -> int:
    from compiler.viz import graph_after, kernel_timings, load_profile, write_view

    graph = graph_after(args.model, args.target, args.after, disable=args.disable)
    timings = kernel_timings(load_profile(args.profile), graph) if args.profile else None
    path = write_view(graph, args.output, timings)
    stage = "imported" if args.after == "import" else f"after {args.after or 'the whole pipeline'}"
    print(f"wrote {path}: the {args.target} graph {stage}, {len(graph)} nodes")
    return EXIT_OK


def cmd_devices(args) -> int:
    from dataclasses import asdict

    from runtime.devices import available_devices

    devices = available_devices()
    if args.json:
        print(json.dumps([asdict(device) for device in devices], indent=2))
        return EXIT_OK
    for device in devices:
        selector = f"  (device={device.selector!r})" if device.selector else ""
        print(f"{device.target:4} {device.name}{selector}")
        for key, value in device.details.items():
            print(f"       {key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return EXIT_OK


def cmd_disasm(args) -> int:
    from runtime.gna import read_stream, stream_bytes
    from runtime.gna.disasm import disassemble

    print(disassemble(read_stream(stream_bytes(args.artifact))))
    return EXIT_OK


def _add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", nargs="+", default=[], metavar="NAME=FILE.npy",
                   help="input values; inputs not given get seeded random values")
    p.add_argument("--seed", type=int, default=0, help="seed for random inputs (default 0)")


def build_parser() -> argparse.ArgumentParser:
    from compiler.targets.base import get_target, target_names

    def target(text: str) -> str:
        try:
            get_target(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text

    parser = argparse.ArgumentParser(prog="kiln", description="Kiln compiles ONNX models ahead of time into "
                                     "artifacts that a small runtime loads and runs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the compiler does")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (for reporting Kiln bugs)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("compile", help="compile an ONNX model into an artifact directory")
    p.add_argument("model", help="path of the .onnx model")
    p.add_argument("-o", "--output", required=True, help="artifact directory to write (e.g. model.kiln)")
    p.add_argument("-t", "--target", default="ref", type=target, metavar="TARGET",
                   help=f"what to compile for: {', '.join(target_names(composite=False))}, or hetero:T1,T2,... "
                        "(parts by support and priority), auto:T1,T2,... (the best present at load), "
                        "multi:T1,T2,... (calls spread over all) (default: ref)")
    p.add_argument("--disable", nargs="+", default=[], metavar="PASS", help="passes to skip by name")
    p.add_argument("--shape", nargs="+", default=[], metavar="NAME=D0,D1,...",
                   help="compile for these static input shapes (symbolic dims become these sizes); a leading "
                        "LOW..HIGH makes a dynamic batch with those bounds (cpu, gpu), e.g. input_ids=1..8,128; LOW.. "
                        "leaves it unbounded; LOW..HIGH past it makes dynamic extents (cpu, gpu), e.g. a sequence "
                        "length input_ids=1..8,1..512 attention_mask=1..8,1..512 or an image size "
                        "x=1,3,32..320,32..320")
    pre = p.add_argument_group("input preprocessing, compiled into the model (OpenVINO's PrePostProcessor order)")
    pre.add_argument("--input-type", nargs="+", default=[], metavar="NAME=TYPE",
                     help="the element type callers give (uint8/u8, int8, float16, float32), converted first")
    pre.add_argument("--layout", nargs="+", default=[], metavar="NAME=LAYOUT",
                     help="the layout callers give (NHWC or NCHW); the model's input is NCHW")
    pre.add_argument("--reverse-input-channels", nargs="+", default=[], metavar="NAME",
                     help="reverse the channel order (BGR <-> RGB)")
    pre.add_argument("--resize", nargs="+", default=[], metavar="NAME=H,W",
                     help="callers give H x W images, resized (bilinear) to the model's size")
    pre.add_argument("--mean-values", nargs="+", default=[], metavar="NAME=M0,M1,...",
                     help="subtracted per channel (after the steps above)")
    pre.add_argument("--scale-values", nargs="+", default=[], metavar="NAME=S0,S1,...",
                     help="divided per channel (after the mean)")
    p.add_argument("--cache-dir", metavar="DIR", help="reuse artifacts compiled before with the same model, "
                   "options, machine and compiler (default: $KILN_CACHE_DIR; none when unset)")
    p.add_argument("--specialize", nargs="+", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="one shape set of several to compile into one artifact that picks the part matching "
                        "each call's input shapes (repeat the flag per set)")
    p.add_argument("--freeze", nargs="+", default=[], metavar="NAME=FILE.npy",
                   help="make these inputs constants with the values in FILE.npy (e.g. a Reshape's shape)")
    p.add_argument("--state", nargs="+", default=[], metavar="INPUT=OUTPUT",
                   help="make each pair a state variable carried across inferences (e.g. h_in=h_out)")
    p.add_argument("--initial-state", nargs="+", default=[], metavar="INPUT=FILE.npy",
                   help="initial values of state variables (default: zeros)")
    p.add_argument("--triple", help="cpu target: LLVM target triple to cross-compile for (default: this machine)")
    p.add_argument("--cpu", help="cpu target: CPU name, e.g. skylake-avx512 (default: this machine's)")
    p.add_argument("--features", help="cpu target: LLVM feature string, e.g. +avx2,+fma (default: this machine's)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "float32", "float16"),
                   help="cpu/gpu: fp16 stores weights (gpu: all tensors) as float16, keeping what overflows in "
                        "float32, and reports it; int8 quantizes (QDQ, per-channel int8 weights, uint8 activations) "
                        "with ranges measured on --calibration and reports the error per layer (default: fp32)")
    p.add_argument("--calibration", metavar="PATH", help="gna target and --precision fp16/int8: calibration inputs, an "
                   ".npz or a directory of NAME.npy (default: seeded normal inputs)")
    p.add_argument("--calibration-size", type=_positive_int, metavar="N", help="use the first N calibration samples "
                   "(without --calibration: N seeded inputs; default 16)")
    p.add_argument("--calibration-method", choices=("minmax", "percentile", "entropy", "mse"),
                   help="--precision int8: how activation ranges are estimated (default: minmax)")
    p.add_argument("--calibration-percentile", type=float, metavar="P",
                   help="--calibration-method percentile: the percentile kept (default: 99.999)")
    p.add_argument("--ignore", nargs="+", default=[], metavar="NODE", help="--precision int8: nodes kept float")
    p.add_argument("--report", metavar="PATH", help="also write the compile's report.json (precision fp16/int8, "
                   "gna) to PATH")
    p.add_argument("--gna-weights", choices=("int16", "int8"), help="gna target: weight width (default: int16)")
    p.add_argument("--gna-generation", dest="generation", choices=("GNA2.0", "GNA3.0"),
                   help="gna target: hardware generation; GNA3.0 adds CONV2D and 2-D pooling (default: GNA2.0)")
    p.add_argument("--fallback", choices=("cpu",), help="gna target: run what the GNA cannot on the cpu target, in "
                   "one split artifact (default: reject the model)")
    p.add_argument("--dump-after", nargs="+", metavar="PASS", help="write the graph after these passes ('all')")
    p.add_argument("--dump-dir", default="kiln-dump", help="where --dump-after writes (default: kiln-dump)")
    p.add_argument("--dump-format", default="text", help="text, dot or text,dot (default: text)")
    p.add_argument("--time-passes", action="store_true", help="print how long each pass took")
    p.add_argument("--verify-each", action="store_true", help="verify the graph after every pass")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary (errors still show)")
    p.set_defaults(run=cmd_compile)

    p = commands.add_parser("run", help="run an artifact (or compile and run an .onnx) and print its outputs")
    p.add_argument("artifact", help="artifact directory, or an .onnx model to compile in memory first")
    p.add_argument("-t", "--target", default="ref", type=target, help="target when given an .onnx model")
    _add_input_arguments(p)
    p.add_argument("-n", "--iterations", type=int, default=1, help="inferences to time (default 1)")
    p.add_argument("-o", "--output-dir", metavar="DIR", help="also write each output as DIR/NAME.npy")
    p.add_argument("--threads", type=int, default=None, help="cpu artifacts: exact thread count (default: all cores)")
    p.set_defaults(run=cmd_run)

    p = commands.add_parser("bench", help="measure latency and throughput of an artifact (or an .onnx compiled "
                            "in memory), optionally with a per-kernel profile")
    p.add_argument("model", metavar="ARTIFACT|MODEL.onnx", help="artifact directory, or an .onnx model to compile")
    p.add_argument("--target", default="cpu", type=target, help="target when given an .onnx model (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="cpu artifacts: exact thread count (default: all cores)")
    p.add_argument("--shape", nargs="+", default=[], metavar="NAME=D0,D1,...",
                   help="when compiling an .onnx: static input shapes (symbolic dims become these sizes)")
    _add_input_arguments(p)
    p.add_argument("--warmup", type=int, default=1, help="inferences before measuring (default 1)")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("-n", "--iterations", type=int, help="measure this many inferences")
    limit.add_argument("-t", "--time", type=float, metavar="SECONDS", help="measure for this long (default 10 s)")
    p.add_argument("--hint", choices=["latency", "throughput"], help="latency: one stream, every core (default); "
                   "throughput: a stream per core group, requests in flight on each")
    p.add_argument("--streams", type=int, help="exact number of streams (with --threads: threads per stream)")
    p.add_argument("--profile", action="store_true", help="cpu, gpu: time every kernel, map it to its op and node(s)")
    p.add_argument("--top", type=int, default=10, help="--profile: show the N slowest kernels (0: all; default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_bench)

    p = commands.add_parser("info", help="describe an artifact: target, inputs, outputs, files")
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.add_argument("--verify", action="store_true", help="check every file's sha256, weights included")
    p.set_defaults(run=cmd_info)

    p = commands.add_parser("check", help="list what a target cannot compile in a model (runs the passes, no codegen)")
    p.add_argument("model", help="path of the .onnx model")
    p.add_argument("-t", "--target", default="ref", type=lambda text: text if text == "all" else target(text),
                   help="target to check against, or 'all' (default: ref)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_check)

    p = commands.add_parser("diff", help="compare every node's output of the compiled model with a reference "
                            "(onnxruntime or the ref target) and name the first one over tolerance")
    p.add_argument("model", help="path of the .onnx model")
    p.add_argument("-t", "--target", default="cpu", type=target, help="target to compile for (default: cpu)")
    p.add_argument("--reference", default="ort", choices=["ort", "ref"],
                   help="what to compare with: onnxruntime (default) or Kiln's ref target")
    _add_input_arguments(p)
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (default 1e-3)")
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default 1e-4)")
    p.add_argument("--disable", nargs="+", default=[], metavar="PASS", help="passes to skip by name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_diff)

    p = commands.add_parser("viz", help="draw the graph as the compiler sees it after a pass (DOT, SVG, PNG, "
                            "HTML) or export it as ONNX for Netron")
    p.add_argument("model", help="path of the .onnx model")
    p.add_argument("-t", "--target", default="cpu", type=target, help="whose pipeline to run (default: cpu)")
    p.add_argument("--after", metavar="PASS", help="stop after this pass ('import': no passes; default: all)")
    p.add_argument("--disable", nargs="+", default=[], metavar="PASS", help="passes to skip by name")
    p.add_argument("--profile", metavar="BENCH.json", help="per-kernel times to show, from "
                   "`kiln bench ARTIFACT --profile --top 0 --json`")
    p.add_argument("-o", "--output", required=True, help="graph.dot|svg|png|html|onnx (the suffix picks the format)")
    p.set_defaults(run=cmd_viz)

    p = commands.add_parser("devices", help="list where artifacts can run here: the CPU, OpenCL devices, the GNA "
                            "executor")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_devices)

    p = commands.add_parser("disasm", help="list a gna artifact's instruction stream: header, endpoints, layers, "
                            "PWL tables")
    p.add_argument("artifact", help="gna artifact directory, or a .gna stream file")
    p.set_defaults(run=cmd_disasm)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="kiln: %(message)s")
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader of our output went away (`kiln ... | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except _user_errors() as error:
        if args.debug:
            raise
        print(f"kiln {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # the last line of defence: a bug in Kiln, said plainly
        if args.debug:
            raise
        print(f"kiln {args.command}: internal error ({type(error).__name__}: {error}). This is a bug in Kiln; "
              "rerun with --debug and report the traceback.", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
