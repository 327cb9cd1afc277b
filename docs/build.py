"""Builds the generated reference pages: docs/cli.md from the `kiln` argument parser, docs/api.md from
the docstrings and signatures of the public Python API.

    python docs/build.py           # rewrite both pages
    python docs/build.py --check   # exit 1 if a page is out of date (the test suite runs this)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

WIDTH = 100  # help text width, fixed so the page does not depend on the terminal

# (section, [dotted names]) of the public API, in reading order.
API = [
    ("Compiling", ["compiler.driver.compile", "compiler.driver.optimize", "compiler.query.query_model",
                   "compiler.preprocess.Preprocess", "compiler.driver.UnsupportedByTargetError",
                   "compiler.artifact.Artifact"]),
    ("Running", ["runtime.load", "runtime.devices.available_devices", "runtime.devices.Device", "runtime.model.CompiledModel", "runtime.requests.InferRequest",
                 "runtime.requests.AsyncInferQueue", "runtime.state.VariableState", "runtime.signature.TensorInfo",
                 "runtime.signature.InputError", "runtime.artifact_reader.ArtifactError"]),
    ("Measuring and inspecting", ["runtime.benchmark.benchmark", "compiler.diff.diff_model",
                                  "compiler.viz.graph_after", "compiler.viz.write_view"]),
    ("Writing passes", ["compiler.passes.manager.register_pass", "compiler.passes.manager.PassSpec",
                        "compiler.passes.manager.PassContext", "compiler.passes.manager.Instrument",
                        "compiler.passes.manager.PassManager", "compiler.ir.graph.Graph",
                        "compiler.ir.types.TensorType", "compiler.targets.base.get_target"]),
    ("Adding ops", ["compiler.ops.registry.OpDef", "compiler.ops.registry.register",
                    "compiler.codegen.llvm.kernels.registry.KernelSpec",
                    "compiler.codegen.llvm.kernels.registry.register_kernel"]),
]


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH)


def cli_reference() -> str:
    from compiler.cli import build_parser

    parser = build_parser()
    parser.formatter_class = _formatter
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = ["# CLI reference", "", "Generated from the argument parser by `python docs/build.py`; do not edit.", "",
             "```", parser.format_help().rstrip(), "```", ""]
    for name, sub in commands.choices.items():
        sub.formatter_class = _formatter
        lines += [f"## kiln {name}", "", "```", sub.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def _resolve(dotted: str):
    module_name, _, attribute = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return _resolve(module_name).__dict__[attribute]


class _Annotation(str):
    """An annotation kept as written (postponed annotations are strings; inspect would quote them)."""

    def __repr__(self) -> str:
        return str(self)


def _signature(obj) -> str:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    parameters = [p.replace(annotation=_Annotation(p.annotation)) if isinstance(p.annotation, str) else p
                  for p in signature.parameters.values()]
    returns = signature.return_annotation
    return str(signature.replace(parameters=parameters,
                                 return_annotation=_Annotation(returns) if isinstance(returns, str) else returns))


def _summary(doc: str | None) -> str:
    """The docstring's first paragraph on one line."""
    return "" if not doc else " ".join(doc.split("\n\n")[0].split())


def _public_methods(cls) -> list[tuple[str, object]]:
    return [(name, member) for name, member in cls.__dict__.items()
            if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))]


def api_reference() -> str:
    lines = ["# Python API reference", "",
             "Generated from the docstrings by `python docs/build.py`; do not edit. The concepts behind these "
             "names are in [concepts.md](concepts.md).", ""]
    for section, names in API:
        lines += [f"## {section}", ""]
        for dotted in names:
            obj = _resolve(dotted)
            kind = "class" if inspect.isclass(obj) else "def"
            lines += [f"### `{dotted}`", "", "```python", f"{kind} {obj.__name__}{_signature(obj)}", "```", "",
                      inspect.getdoc(obj) or "", ""]
            if inspect.isclass(obj):
                for name, member in _public_methods(obj):
                    doc = inspect.getdoc(member.fget if isinstance(member, property) else member)
                    signature = "" if isinstance(member, property) else _signature(member)
                    lines.append(f"- `{name}{signature}`" + (f": {_summary(doc)}" if doc else ""))
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


PAGES = {"cli.md": cli_reference, "api.md": api_reference}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the pages are up to date")
    args = parser.parse_args()
    stale = []
    for name, build in PAGES.items():
        text, path = build(), DOCS / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run `python docs/build.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
