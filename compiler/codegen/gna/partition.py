"""`--fallback cpu` for the gna target: what the GNA cannot run goes to the cpu target, in one artifact.

The graph (after the gna pipeline) is cut in topological order into parts (compiler/partition.py),
each run wholly on one device: a node is on the cpu when the gna target rejects it, alone or in its
part (a trial lowering of each gna part finds layout and ISA-limit problems; those nodes move and
the cut is redone). A gna part quantizes its float inputs to int16 and dequantizes its outputs (its
endpoints' scale factors), so the boundary conversion is the gna executor's own.
"""

from __future__ import annotations

from compiler.ir.graph import Graph
from compiler.partition import Part, split, subgraph


def _to_move(graph: Graph, part: Part, problem) -> set[str]:
    """The part's nodes a problem puts on the cpu: the node it names, or those reading the input it names."""
    names = {node.name for node in part.nodes}
    if problem.node in names:
        return {problem.node}
    return {node.name for node in part.nodes
            if any(v is not None and graph.value_name(v) == problem.node for v in graph.input_values(node))}


def assign(graph: Graph, gna_problems) -> list[Part]:
    """The parts, once no gna part has a problem `gna_problems(graph)` (a list of Unsupported) can place."""
    on_cpu: set[str] = set()
    while True:
        parts = split(graph, lambda node: "cpu" if node.name in on_cpu else "gna")
        moved = set()
        for index, part in enumerate(parts):
            if part.device == "gna":
                for problem in gna_problems(subgraph(graph, part, f"part{index}")):
                    moved |= _to_move(graph, part, problem)
        if not moved:
            return parts
        on_cpu |= moved
