"""Helpers for Before/Expected pass tests: build, run a pass, compare graphs, compare results."""

from __future__ import annotations

import networkx as nx
import numpy as np

from compiler.ir.graph import Graph
from compiler.ir.types import TensorType
from compiler.ops.interpreter import Interpreter
from compiler.passes.infer_types import infer_types
from compiler.passes.manager import PassContext, PassManager, PassSpec, VerifyInstrument, get_pass


def f32(*shape) -> TensorType:
    return TensorType("float32", shape)


def run_pass(name: str, graph: Graph, **options) -> Graph:
    """Type the graph, then run pass `name` on it directly."""
    return get_pass(name, **options)(infer_types(graph), PassContext())


def run_verified(name: str, graph: Graph) -> Graph:
    """Type the graph, then run pass `name` in a PassManager that verifies (types included) afterwards."""
    return PassManager([PassSpec(name)], [VerifyInstrument()]).run(infer_types(graph))


def canonical_text(graph: Graph) -> str:
    """The printed graph with nodes ordered by value name among topological ties, so that
    graphs equal up to node insertion order (and node names) print the same."""
    graph = graph.copy()
    _reorder(graph)
    return str(graph)


def _reorder(graph: Graph) -> None:
    key = {node.name: (node.output_names or [node.name])[0] for node in graph.nodes()}
    for rank, name in enumerate(nx.lexicographical_topological_sort(graph.nx, key=key.__getitem__)):
        graph.nx.nodes[name]["order"] = rank
        for subgraph in graph.subgraphs(graph.node(name)).values():
            _reorder(subgraph)


def assert_same_graph(actual: Graph, expected: Graph) -> None:
    assert canonical_text(actual) == canonical_text(infer_types(expected))


def assert_same_results(before: Graph, after: Graph, feeds: dict) -> None:
    """Both graphs compute the same outputs (by position) for `feeds`."""
    expected = Interpreter(before).run(feeds)
    actual = Interpreter(after).run(feeds)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got, want)
