"""Pass registry, pipelines as data, the PassManager and its instruments.

A pass is a function `(graph, ctx) -> graph` or a frozen dataclass whose fields are its
options and whose `__call__(graph, ctx)` runs it. Either is registered by name with
`@register_pass("name")`; user code registers its own the same way, with no edits here.
A pipeline is a list of PassSpec (name, options, why). Instruments see every pass run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from compiler.ir.graph import Graph
from compiler.submodules import import_submodules

log = logging.getLogger("kiln.passes")

_PASSES: dict[str, Any] = {}


class PassError(ValueError):
    """A pipeline names an unknown pass or gives a pass options it does not have."""


def register_pass(name: str):
    """Decorator: make a pass function or pass dataclass available to pipelines under `name`."""

    def decorate(obj):
        if name in _PASSES and _PASSES[name] is not obj:
            raise PassError(f"a pass named {name!r} is already registered ({_PASSES[name]!r})")
        _PASSES[name] = obj
        return obj

    return decorate


def registered_passes() -> list[str]:
    _load_builtin_passes()
    return sorted(_PASSES)


def get_pass(name: str, **options) -> Callable[[Graph, "PassContext"], Graph]:
    """The runnable pass for `name` with `options`; unknown names and options are errors."""
    _load_builtin_passes()
    if name not in _PASSES:
        raise PassError(f"unknown pass {name!r}; registered passes: {', '.join(sorted(_PASSES))}")
    obj = _PASSES[name]
    if dataclasses.is_dataclass(obj):
        fields = {f.name for f in dataclasses.fields(obj)}
        unknown = set(options) - fields
        if unknown:
            raise PassError(f"pass {name!r} has no option(s) {sorted(unknown)}; options: {sorted(fields)}")
        return obj(**options)
    if options:
        raise PassError(f"pass {name!r} takes no options (given {sorted(options)})")
    return obj


@dataclass(frozen=True)
class PassSpec:
    """One step of a pipeline: which pass, with which options, and why it is there."""

    name: str
    options: dict = field(default_factory=dict)
    why: str = ""


@dataclass
class PassContext:
    """What passes may read besides the graph: the target, user options, a logger."""

    target: str = "ref"
    options: dict = field(default_factory=dict)
    log: logging.Logger = log


class Instrument:
    """Hooks around each pass; override what you need."""

    def before_pass(self, name: str, graph: Graph) -> None:
        pass

    def after_pass(self, name: str, graph: Graph, seconds: float) -> None:
        pass


class TimingInstrument(Instrument):
    """Records wall time per pass run, in pipeline order."""

    def __init__(self):
        self.timings: list[tuple[str, float]] = []

    def after_pass(self, name, graph, seconds):
        self.timings.append((name, seconds))

    def summary(self) -> str:
        return "\n".join(f"{seconds * 1e3:9.2f} ms  {name}" for name, seconds in self.timings)


class VerifyInstrument(Instrument):
    """Verifies the graph (types included) after each pass; names the pass that broke it."""

    def after_pass(self, name, graph, seconds):
        from compiler.ir.verifier import VerificationError, verify

        try:
            verify(graph, check_types=True)
        except VerificationError as error:
            raise VerificationError(graph.name, [f"after pass {name!r}: {p}" for p in error.problems]) from None


class DumpInstrument(Instrument):
    """Writes the graph after the selected passes (all when `passes` is None) as text and/or DOT."""

    def __init__(self, directory: str | Path, passes: Iterable[str] | None = None, formats=("text",)):
        self.directory = Path(directory)
        self.passes = None if passes is None else set(passes)
        self.formats = tuple(formats)
        self.count = 0

    def after_pass(self, name, graph, seconds):
        self.count += 1
        if self.passes is not None and name not in self.passes:
            return
        from compiler.ir.dot import to_dot

        self.directory.mkdir(parents=True, exist_ok=True)
        stem = self.directory / f"{self.count:02d}_{name}"
        if "text" in self.formats:
            stem.with_suffix(".txt").write_text(str(graph) + "\n")
        if "dot" in self.formats:
            stem.with_suffix(".dot").write_text(to_dot(graph))


class PassManager:
    """Runs a pipeline over a graph, calling the instruments around each pass."""

    def __init__(self, pipeline: Iterable[PassSpec], instruments: Iterable[Instrument] = (),
                 disabled: Iterable[str] = ()):
        self.pipeline = list(pipeline)
        self.instruments = list(instruments)
        self.disabled = set(disabled)
        known = set(registered_passes())
        for name in self.disabled - known:
            raise PassError(f"cannot disable unknown pass {name!r}; registered passes: {', '.join(sorted(known))}")
        self.passes = [(spec, get_pass(spec.name, **spec.options)) for spec in self.pipeline]

    def run(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        ctx = ctx or PassContext()
        for spec, run_pass in self.passes:
            if spec.name in self.disabled:
                ctx.log.info("pass %s skipped: disabled by the user", spec.name)
                continue
            for instrument in self.instruments:
                instrument.before_pass(spec.name, graph)
            start, nodes = time.perf_counter(), len(graph)
            graph = run_pass(graph, ctx)
            seconds = time.perf_counter() - start
            if not isinstance(graph, Graph):
                raise PassError(f"pass {spec.name!r} returned {type(graph).__name__}, not a Graph")
            ctx.log.debug("pass %s: %d -> %d nodes in %.2f ms", spec.name, nodes, len(graph), seconds * 1e3)
            for instrument in self.instruments:
                instrument.after_pass(spec.name, graph, seconds)
        return graph


def _load_builtin_passes() -> None:
    """Import each pass module in compiler/passes once; each registers itself."""
    import_submodules("compiler.passes", frozenset({"manager"}))
