"""compile(model, target, **options) -> Artifact: import, check, run the target's pipeline, emit."""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence, TextIO

from compiler.artifact import Artifact
from compiler.cache import cached_compile
from compiler.dispatch import DispatchError, dispatch_artifact
from compiler.dynamic_batch import (BatchBounds, DynamicBatchError, bounds_of, check_batch_arithmetic,
                                    check_size_arithmetic, split_bounds)
from compiler.dynamic_extent import EXTENT_SINKS, DynamicExtentError, ExtentBounds, split_extent
from compiler.ir.graph import Graph
from compiler.passes.manager import Instrument, PassContext, PassManager, PassSpec
from compiler.precision.options import precision_of, precision_problem
from compiler.precision.fp16_report import REPORT
from compiler.preprocess import Preprocess, apply_preprocessing
from compiler.progress import CompileProgress
from compiler.specialize import specialize_inputs
from compiler.state import state_files
from compiler.targets.base import Unsupported, get_target
from compiler.targets.ref import signature


class UnsupportedByTargetError(ValueError):
    """The model holds ops the chosen target cannot compile; `unsupported` lists every one."""

    def __init__(self, target: str, unsupported: list[Unsupported]):
        self.unsupported = unsupported
        lines = [f"  node {u.node!r} ({u.op}): {u.reason}" for u in unsupported]
        super().__init__(f"target {target!r} cannot compile {len(unsupported)} node(s):\n" + "\n".join(lines))


def to_graph(model) -> Graph:
    """An IR graph from a Graph, an ONNX path/bytes/ModelProto."""
    if isinstance(model, Graph):
        return model.copy()
    from frontends.onnx.importer import import_model

    return import_model(model)


def optimize(model, target: str = "ref", *, pipeline: Iterable[PassSpec] | None = None,
             disable: Iterable[str] = (), instruments: Iterable[Instrument] = (),
             shapes: Mapping[str, Sequence[int]] | None = None, freeze: Mapping[str, object] | None = None,
             preprocess: Mapping[str, Preprocess] | None = None, **options) -> Graph:
    """The graph after the target's pipeline (or `pipeline` when given), checked for what the target
    cannot compile: what `emit` will see. Support is judged after the passes, since folding often
    turns shape computations into constants. `shapes` and `freeze` specialise the inputs first
    (compiler/specialize.py), then `preprocess` puts input preprocessing in front (compiler/preprocess.py)."""
    chosen = get_target(target)
    steps = chosen.pipeline(options)  # called even when `pipeline` replaces it: it gives the target the options
    steps = steps if pipeline is None else list(pipeline)
    manager = PassManager(steps, instruments, disabled=disable)
    graph = apply_preprocessing(specialize_inputs(to_graph(model), shapes, freeze), preprocess)
    graph = manager.run(graph, PassContext(target=target, options=dict(options)))
    problems = chosen.unsupported(graph)
    if problems:
        raise UnsupportedByTargetError(target, problems)
    return graph


def compile(model, target: str = "ref", *, pipeline: Iterable[PassSpec] | None = None,
            disable: Iterable[str] = (), instruments: Iterable[Instrument] = (),
            shapes: Mapping[str, Sequence[int]] | None = None, freeze: Mapping[str, object] | None = None,
            state: Mapping[str, str] | None = None, initial_state: Mapping[str, object] | None = None,
            progress: TextIO | bool = False, specialize: Sequence[Mapping[str, Sequence[int]]] | None = None,
            cache_dir: str | os.PathLike | None = None, preprocess: Mapping[str, Preprocess] | None = None,
            report: str | os.PathLike | None = None, **options) -> Artifact:
    """Compile `model` (ONNX path, bytes, ModelProto or IR Graph) for `target`; `.save(path)` the result.

    `pipeline` replaces the target's pass list (start from `get_target(t).pipeline({})` to
    insert your own passes); `disable` skips passes by name; `instruments` watch each pass.
    `shapes={"input": [1, 3, 320, 320]}` compiles for those static input shapes; a leading dim given as
    "1..8" (or (1, 8)) is a dynamic batch with those bounds, one cpu or gpu artifact for every size ("1.."
    unbounded; compiler/dynamic_batch.py); dims past it given so are dynamic extents, a sequence length
    ({"ids": ["1..8", "1..512"]}) or an image's height and width ({"x": [1, 3, "32..320", "32..320"]}),
    shared by inputs naming the same symbolic dim (cpu, gpu; compiler/dynamic_extent.py);
    `freeze={"shape": array}` makes an input a constant (it leaves the artifact's signature).
    `state={"h_in": "h_out"}` makes the pair a state variable each infer request carries from one
    inference to the next, starting from `initial_state["h_in"]` or zeros (compiler/state.py).
    `progress=True` (or a stream) shows each pass, code generation stage and kernel on stderr (or
    the stream), then where the time went (compiler/progress.py).
    `specialize=[{"x": [1, 64]}, {"x": [1, 128]}]` compiles one part per shape set into one artifact
    that runs the part matching each call's input shapes (compiler/dispatch.py).
    `cache_dir` reuses the artifact of an earlier compile with the same model, target, options,
    machine and compiler (compiler/cache.py).
    `preprocess={"image": Preprocess(element_type="uint8", layout="NHWC", ...)}` compiles input
    preprocessing into the model's first kernels (compiler/preprocess.py).
    `precision="fp16"` (cpu, gpu) stores weights as float16, keeps what overflows in float32
    (checked on `calibration` data or seeded random inputs) and adds report.json (compiler/precision);
    `precision="int8"` (ref, cpu, gpu) quantizes to a QDQ graph with ranges measured on `calibration`
    (`calibration_size`, `calibration_method`; `ignore` keeps nodes float) and adds report.json
    (compiler/quantization/driver.py);
    `report` also writes the artifact's report.json to that path.
    """
    arguments = {"pipeline": pipeline, "disable": disable, "instruments": instruments, "shapes": shapes,
                 "freeze": freeze, "state": state, "initial_state": initial_state, "progress": progress,
                 "specialize": specialize, "preprocess": preprocess}
    if report is not None:
        artifact = compile(model, target, **arguments, cache_dir=cache_dir, **options)
        _save_report(artifact, target, report)
        return artifact
    problem = precision_problem(options, target)
    if problem:
        raise UnsupportedByTargetError(target, [Unsupported("(options)", "precision", problem)])
    if cache_dir is not None:
        keyed = {name: value for name, value in arguments.items() if name not in ("instruments", "progress")}
        keyed["disable"] = sorted(disable)
        return cached_compile(cache_dir, model, target, {**keyed, **options},
                              lambda: compile(model, target, **arguments, **options))
    if specialize:
        if shapes or state or initial_state:
            raise DispatchError("specialize= lists whole input shape sets: it does not combine with shapes= or state=")
        model = to_graph(model)
        artifact = dispatch_artifact(specialize, lambda part_shapes: compile(
            model, target, pipeline=pipeline, disable=disable, instruments=instruments, shapes=part_shapes,
            freeze=freeze, progress=progress, preprocess=preprocess, **options), signature(model))
        if freeze:
            artifact.manifest["frozen_inputs"] = sorted(freeze)
        return artifact
    if any(bounds_of(dim) for shape in (shapes or {}).values() for dim in list(shape or ())[1:]):
        model = to_graph(model)
    shapes, extent = split_extent(shapes, model if isinstance(model, Graph) else None)
    if extent:
        options = {**options, "dynamic_extent": extent.option()}
        _check_dynamic_extent(model, target, options, extent)
    shapes, bounds = split_bounds(shapes)
    if bounds:
        options = {**options, "dynamic_batch": bounds.option()}
        model = to_graph(model)
        _check_dynamic_batch(model, target, options, bounds)
    inputs_setup, quantization = {"shapes": shapes, "freeze": freeze, "preprocess": preprocess}, None
    if precision_of(options) == "int8":  # the specialised float graph becomes a QDQ graph the target compiles
        from compiler.quantization.driver import quantize_model

        model, quantization = quantize_model(apply_preprocessing(specialize_inputs(to_graph(model), shapes, freeze),
                                                                 preprocess), target, options)
        inputs_setup = {}
    chosen = get_target(target)
    steps = chosen.pipeline(options) if pipeline is None else list(pipeline)
    tracker = CompileProgress(len(steps), None if progress is True else progress) if progress else None
    graph = optimize(model, target, pipeline=steps, disable=disable,
                     instruments=[*instruments, *([tracker] if tracker else [])], **inputs_setup, **options)
    if tracker:
        with tracker.active():
            artifact = chosen.emit(graph, options)
        tracker.close()
    else:
        artifact = chosen.emit(graph, options)
    if freeze:
        artifact.manifest["frozen_inputs"] = sorted(freeze)
    if state or initial_state:
        artifact.manifest["state"], files = state_files(artifact.manifest, state or {}, initial_state)
        artifact.files.update(files)
    if quantization:
        artifact.files[REPORT] = quantization
    return artifact


def _check_dynamic_batch(graph: Graph, target: str, options: dict, bounds: BatchBounds) -> None:
    if target not in ("cpu", "gpu"):
        raise DynamicBatchError(f"a dynamic batch ({bounds.low}..{bounds.high or ''}) is compiled for the cpu and gpu "
                                f"targets, not {target!r}; compile one part per batch size with specialize= instead")
    check_batch_arithmetic(graph, bounds)


def _check_dynamic_extent(graph: Graph, target: str, options: dict, bounds: ExtentBounds) -> None:
    where = "a dynamic dim past the batch (" + ", ".join(f"{d.name} {d.low}..{d.high}" for d in bounds.dims) + ")"
    if target not in ("cpu", "gpu"):
        raise DynamicExtentError(f"{where} is compiled for the cpu and gpu targets, not {target!r}; compile one part "
                                 "per size with specialize= instead")
    if precision_of(options) == "int8":
        raise DynamicExtentError(f"{where} does not take precision int8 yet; compile one part per size with "
                                 "specialize= instead")
    axes: dict[str, set[int]] = {}
    for name, axis, _ in bounds.inputs:
        axes.setdefault(name, set()).add(axis)
    check_size_arithmetic(graph, axes, "dynamic dim's size", EXTENT_SINKS,
                          "Compile one part per size with specialize= instead", error=DynamicExtentError)


def _save_report(artifact: Artifact, target: str, path: str | os.PathLike) -> None:
    if REPORT not in artifact.files:
        raise UnsupportedByTargetError(target, [Unsupported("(options)", "report", "this compile makes no report: "
                                                            "reports come with precision fp16 or int8, or target gna")])
    with open(path, "wb") as out:
        out.write(artifact.files[REPORT])
