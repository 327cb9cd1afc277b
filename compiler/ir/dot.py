"""Graphviz DOT form of a Graph: one box per node, edges labelled with the tensor type."""

from __future__ import annotations

from compiler.ir.graph import Graph, Value


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph) -> str:
    lines = [f"digraph {_quote(graph.name)} {{", "  node [shape=box, fontname=Helvetica];"]
    for node in graph.topological_order():
        if node.is_input:
            label, shape = f"input {node.name}\\n{node.outputs[0]}", "ellipse"
        elif node.is_constant:
            label, shape = f"const {node.name}\\n{node.outputs[0]}", "note"
        else:
            label, shape = f"{node.qualified_op}\\n{node.name}", "box"
        lines.append(f"  {_quote(node.name)} [label={_quote(label)}, shape={shape}];")
    for producer, consumer, data in sorted(graph.nx.edges(data=True), key=lambda e: (e[0], e[1], e[2]["in"])):
        value_type = graph.type_of(Value(producer, data["out"]))
        lines.append(f"  {_quote(producer)} -> {_quote(consumer)} [label={_quote(str(value_type or '?'))}];")
    for name, value in graph.outputs:
        lines.append(f"  {_quote('output ' + name)} [shape=ellipse];")
        lines.append(f"  {_quote(value.node)} -> {_quote('output ' + name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
