"""Readable, deterministic text form of a Graph (stable across runs: used in tests and dumps)."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value


def _format_attr(value) -> str:
    if isinstance(value, Graph):
        return f"graph<{value.name}>"
    if isinstance(value, np.ndarray):
        if value.size <= 8:
            return f"{value.dtype}{list(value.shape)}{value.tolist()}"
        return f"{value.dtype}{list(value.shape)}"
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, bytes):
        return repr(value.decode("utf-8", "replace"))
    return repr(value)


def _format_node(graph: Graph, node: Node, indent: str) -> list[str]:
    results = ", ".join(f"%{n}" for n in node.output_names)
    operands = ", ".join("_" if v is None else f"%{graph.value_name(v)}" for v in graph.input_values(node))
    attrs = {k: v for k, v in sorted(node.attrs.items()) if not (node.is_constant and k == "value")}
    attr_text = " {" + ", ".join(f"{k}={_format_attr(v)}" for k, v in attrs.items()) + "}" if attrs else ""
    if node.is_constant:
        operands = _format_attr(node.attrs["value"])
    version = f"-{node.version}" if node.version is not None else ""
    types = ", ".join("?" if t is None else str(t) for t in node.outputs)
    lines = [f"{indent}{results} = {node.qualified_op}{version}({operands}){attr_text} : {types}"]
    for key, subgraph in sorted(graph.subgraphs(node).items()):
        lines.append(f"{indent}  {key}:")
        lines.extend(_format_body(subgraph, indent + "    "))
    return lines


def _format_body(graph: Graph, indent: str) -> list[str]:
    signature = ", ".join(f"%{graph.value_name(Value(name, 0))}: {graph.node(name).outputs[0] or '?'}" for name in graph.inputs)
    lines = [f"{indent}graph {graph.name}({signature}) {{"]
    for node in graph.topological_order():
        if not node.is_input:
            lines.extend(_format_node(graph, node, indent + "  "))
    returns = ", ".join(f"{name}=%{graph.value_name(value)}" for name, value in graph.outputs)
    lines.append(f"{indent}  return {returns}")
    lines.append(f"{indent}}}")
    return lines


def format_graph(graph: Graph) -> str:
    return "\n".join(_format_body(graph, ""))
