"""Graph views: the graph as the compiler sees it after any pass, as DOT, SVG, PNG, HTML or ONNX.

`graph_after(model, target, after)` runs the target's pipeline up to the last run of pass `after`
("import" for the imported graph, None for the whole pipeline). `write_view(graph, path)` picks
the format from the suffix: .dot (text), .svg/.png (laid out by Graphviz: the `graphviz-pure`
command from the `viz` extra), .html (one self-contained page: the SVG plus a table of every
kernel, its fused nodes, shapes and time), .onnx (for Netron; fused ops in Kiln's domain).
`kernel_timings(profile, graph)` reads per-kernel times from `kiln bench --profile --json`.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

from compiler.driver import to_graph
from compiler.ir.dot import to_dot
from compiler.ir.graph import Graph
from compiler.passes.manager import Instrument, PassContext, PassError, PassManager
from compiler.targets.base import get_target

FORMATS = (".dot", ".svg", ".png", ".html", ".onnx")
RENDERER = "graphviz-pure"


class VizError(ValueError):
    """A view cannot be written (unknown format, renderer missing, bad profile)."""


class _Snapshot(Instrument):
    def __init__(self, name: str):
        self.name, self.graph = name, None

    def after_pass(self, name, graph, seconds):
        if name == self.name:
            self.graph = graph.copy()


def graph_after(model, target: str, after: str | None = None, disable=()) -> Graph:
    """The graph after the last run of pass `after` in the target's pipeline."""
    graph = to_graph(model)
    if after == "import":
        return graph
    pipeline = get_target(target).pipeline({})
    names = [spec.name for spec in pipeline]
    if after is not None and after not in names:
        raise PassError(f"pass {after!r} is not in the {target} pipeline; its passes: {', '.join(names)} "
                        "(or 'import' for the imported graph)")
    snapshot = _Snapshot(after)
    graph = PassManager(pipeline, [snapshot], disabled=disable).run(graph, PassContext(target=target))
    if after is None:
        return graph
    if snapshot.graph is None:
        raise PassError(f"pass {after!r} was disabled, so there is no graph after it")
    return snapshot.graph


def kernel_timings(profile: dict, graph: Graph) -> dict[str, float]:
    """Node name -> median ms, from a `kiln bench --profile --json` report, for the nodes of `graph`
    whose original node names (`fused_nodes`, or its own name) match a kernel's."""
    try:
        kernels = profile["profile"]["kernels"]
    except (KeyError, TypeError):
        raise VizError("the profile has no per-kernel times: write it with `kiln bench ARTIFACT --profile --json`, "
                       "with --top 0 for every kernel") from None
    by_members = {tuple(node.attrs.get("fused_nodes", [node.name])): node.name for node in graph.nodes()}
    return {by_members[tuple(k["nodes"])]: k["ms"] for k in kernels if tuple(k["nodes"]) in by_members}


def _renderer() -> str:
    beside_python = Path(sys.executable).parent / RENDERER
    found = shutil.which(RENDERER) or (str(beside_python) if beside_python.exists() else None)
    if found is None:
        raise VizError(f"rendering SVG/PNG/HTML needs Graphviz's `{RENDERER}` command: pip install 'kiln[viz]' "
                       "(or write a .dot file and render it with any Graphviz)")
    return found


def render(dot: str, fmt: str) -> bytes:
    """DOT laid out and drawn by Graphviz as `fmt` (svg or png)."""
    result = subprocess.run([_renderer(), f"-T{fmt}"], input=dot.encode(), capture_output=True)
    if result.returncode != 0:
        raise VizError(f"Graphviz failed to render the graph: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def _html_page(graph: Graph, svg: str, timings: dict[str, float]) -> str:
    rows = []
    for node in graph.topological_order():
        if node.is_input or node.is_constant:
            continue
        shapes = ", ".join(str(t) for t in node.outputs)
        ms = f"{timings[node.name]:.3f}" if node.name in timings else ""
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
            node.name, node.qualified_op, ", ".join(node.attrs.get("fused_nodes", [node.name])), shapes, ms)) + "</tr>")
    svg_body = svg[svg.index("<svg"):]
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(graph.name)} (kiln)</title>
<style>body{{font-family:Helvetica,sans-serif}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}} .graph{{overflow:auto;border:1px solid #ddd}}</style>
</head><body><h1>{html.escape(graph.name)}</h1>
<div class="graph">{svg_body}</div>
<h2>Kernels</h2><table><tr><th>node</th><th>op</th><th>original nodes</th><th>output types</th><th>ms</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""


def write_view(graph: Graph, path: str | Path, timings: dict[str, float] | None = None) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise VizError(f"cannot write {path.name!r}: the suffix picks the format, one of {', '.join(FORMATS)}")
    timings = timings or {}
    if suffix == ".onnx":
        from compiler.ops.onnx_export import model_to_proto

        path.write_bytes(model_to_proto(graph).SerializeToString())
        return path
    dot = to_dot(graph, timings, constants=False)
    if suffix == ".dot":
        path.write_text(dot)
    elif suffix == ".html":
        path.write_text(_html_page(graph, render(dot, "svg").decode(), timings))
    else:
        path.write_bytes(render(dot, suffix[1:]))
    return path


def load_profile(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise VizError(f"cannot read the profile {str(path)!r}: {error}") from None
