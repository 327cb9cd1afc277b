"""Graphviz DOT form of a Graph: one box per node, edges labelled with the tensor type.

A fused node lists the original nodes it computes; `timings` (node name -> milliseconds, from a
profile) adds each kernel's time and shades it by its share; `constants=False` leaves the weights
out, which keeps a whole network readable.
"""

from __future__ import annotations

import textwrap

from compiler.ir.graph import Graph, Value


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node_label(node, timings: dict[str, float] | None, total: float) -> tuple[str, str]:
    """(label, extra attributes) of an operation node."""
    lines = [node.qualified_op, node.name]
    members = node.attrs.get("fused_nodes")
    if members and list(members) != [node.name]:
        lines += textwrap.wrap("fused: " + ", ".join(members), 48)
    extra = ""
    if timings and node.name in timings:
        ms = timings[node.name]
        lines.append(f"{ms:.3f} ms ({ms / total:.1%})")
        extra = f', style=filled, fillcolor="0.0 {min(1.0, 4 * ms / total):.2f} 1.0"'  # HSV: redder when slower
    return "\n".join(lines), extra


def to_dot(graph: Graph, timings: dict[str, float] | None = None, constants: bool = True) -> str:
    total = sum(timings.values()) if timings else 0.0
    lines = [f"digraph {_quote(graph.name)} {{", "  node [shape=box, fontname=Helvetica];",
             "  edge [fontname=Helvetica, fontsize=10];"]
    hidden = set()
    for node in graph.topological_order():
        if node.is_input:
            label, shape, extra = f"input {node.name}\n{node.outputs[0]}", "ellipse", ""
        elif node.is_constant:
            if not constants:
                hidden.add(node.name)
                continue
            label, shape, extra = f"const {node.name}\n{node.outputs[0]}", "note", ""
        else:
            (label, extra), shape = _node_label(node, timings, total), "box"
        lines.append(f"  {_quote(node.name)} [label={_quote(label)}, shape={shape}{extra}];")
    for producer, consumer, data in sorted(graph.nx.edges(data=True), key=lambda e: (e[0], e[1], e[2]["in"])):
        if producer in hidden:
            continue
        value_type = graph.type_of(Value(producer, data["out"]))
        lines.append(f"  {_quote(producer)} -> {_quote(consumer)} [label={_quote(str(value_type or '?'))}];")
    for name, value in graph.outputs:
        lines.append(f"  {_quote('output ' + name)} [shape=ellipse];")
        lines.append(f"  {_quote(value.node)} -> {_quote('output ' + name)} [label={_quote(str(graph.type_of(value)))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
