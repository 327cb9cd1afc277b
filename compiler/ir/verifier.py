"""Structural checks of a Graph: acyclic, arity, edges and types consistent.

Passes must leave valid IR; the verify-after-each instrument runs this after every pass.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from compiler.ir.graph import Graph, Node
from compiler.ir.types import OptionalType, SequenceType, TensorType, dtype_of_array
from compiler.ops.onnx_bridge import schema_for


class VerificationError(ValueError):
    """The graph breaks an IR invariant; `problems` lists each one."""

    def __init__(self, graph_name: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"graph {graph_name!r} is not valid IR:\n  " + "\n  ".join(problems))


_TYPES = (TensorType, SequenceType, OptionalType, type(None))


def _compatible(recorded, inferred) -> bool:
    """False only when both types are known and disagree."""
    if recorded is None or inferred is None:
        return True
    if isinstance(recorded, TensorType) and isinstance(inferred, TensorType):
        if recorded.dtype != inferred.dtype:
            return False
        if recorded.shape is None or inferred.shape is None:
            return True
        return len(recorded.shape) == len(inferred.shape) and all(
            not (isinstance(a, int) and isinstance(b, int)) or a == b for a, b in zip(recorded.shape, inferred.shape))
    return type(recorded) is type(inferred)


def _check_node(graph: Graph, node: Node, problems: list[str], check_types: bool) -> None:
    where = f"node {node.name!r} ({node.qualified_op})"
    if len(node.outputs) != len(node.output_names):
        problems.append(f"{where}: {len(node.outputs)} output types but {len(node.output_names)} output names")
    for t in node.outputs:
        if not isinstance(t, _TYPES):
            problems.append(f"{where}: output type {t!r} is not an IR type")
    seen = set()
    for producer, _, data in graph.nx.in_edges(node.name, data=True):
        if data["in"] in seen:
            problems.append(f"{where}: input {data['in']} is fed by more than one edge")
        seen.add(data["in"])
        if not 0 <= data["in"] < node.num_inputs:
            problems.append(f"{where}: edge into input {data['in']} but the node has {node.num_inputs} inputs")
        if not 0 <= data["out"] < len(graph.node(producer).outputs):
            problems.append(f"{where}: reads output {data['out']} of {producer!r}, which has "
                            f"{len(graph.node(producer).outputs)} outputs")
    if node.is_input and node.num_inputs:
        problems.append(f"{where}: a graph input cannot have inputs")
    if node.is_constant:
        value = node.attrs.get("value")
        if not isinstance(value, np.ndarray):
            problems.append(f"{where}: constant has no array value")
        elif node.outputs[0] != TensorType(dtype_of_array(value), value.shape):
            problems.append(f"{where}: type {node.outputs[0]} does not match its value {value.dtype}{list(value.shape)}")
    subgraphs = graph.subgraphs(node)
    schema = None if subgraphs or node.is_input or node.is_constant else schema_for(node.op_type, node.domain, node.version)
    if schema is not None:
        present = {data["in"] for _, _, data in graph.nx.in_edges(node.name, data=True)}
        variadic = schema.inputs and schema.inputs[-1].option == schema.inputs[-1].option.Variadic
        if node.num_inputs > schema.max_input:
            problems.append(f"{where}: {node.num_inputs} inputs, the op takes at most {schema.max_input}")
        for index, formal in enumerate(schema.inputs[: node.num_inputs]):
            if formal.option == formal.option.Single and index not in present:
                problems.append(f"{where}: required input {index} ({formal.name}) is missing")
        if variadic and node.num_inputs < schema.min_input:
            problems.append(f"{where}: {node.num_inputs} inputs, the op needs at least {schema.min_input}")
        if not schema.min_output <= len(node.outputs) <= schema.max_output:
            problems.append(f"{where}: {len(node.outputs)} outputs, the op has {schema.min_output}..{schema.max_output}")
    for key, subgraph in subgraphs.items():
        try:
            verify(subgraph, check_types=check_types)
        except VerificationError as error:
            problems.extend(f"{where} attribute {key!r}: {p}" for p in error.problems)
    if check_types and not (node.is_input or node.is_constant):
        from compiler.ops.registry import infer_node

        inputs = graph.input_values(node)
        try:
            inferred = infer_node(node, graph.input_types(node), [graph.constant_value(v) for v in inputs])
        except (KeyError, ValueError) as error:
            problems.append(f"{where}: {error}")
            return
        for index, (recorded, new) in enumerate(zip(node.outputs, inferred)):
            if not _compatible(recorded, new):
                problems.append(f"{where}: output {index} is recorded as {recorded} but its inputs give {new}")


def verify(graph: Graph, check_types: bool = False) -> None:
    """Raise VerificationError listing every broken invariant; `check_types` also re-infers each node."""
    problems: list[str] = []
    try:
        cycle = nx.find_cycle(graph.nx)
        names = " -> ".join(edge[0] for edge in cycle)
        problems.append(f"the graph has a cycle through nodes {names}")
        raise VerificationError(graph.name, problems)
    except nx.NetworkXNoCycle:
        pass
    for node in graph.nodes():
        _check_node(graph, node, problems, check_types and not problems)
    for name in graph.inputs:
        if name not in graph or not graph.node(name).is_input:
            problems.append(f"graph input {name!r} is not an Input node")
    for name, value in graph.outputs:
        if value.node not in graph or value.index >= len(graph.node(value.node).outputs):
            problems.append(f"graph output {name!r} refers to missing value {value}")
    if problems:
        raise VerificationError(graph.name, problems)
