"""The hetero target: one artifact whose parts run on several targets, by support and priority.

`compile(model, "hetero:gpu,cpu")` (CLI `--target hetero:gpu,cpu`) puts every node on the first
target in the list that can compile it, cuts the graph into consecutive parts on one target each
(compiler/partition.py), compiles each part with its target's own pipeline, and joins them in one
"hetero" artifact that runtime/hetero.py runs part after part, passing tensors across (OpenVINO's
HETERO device). Support is judged after the shared passes (constant folding, common
subexpressions), as each target judges it. `kiln viz`/`-v` show the partition.
"""

from __future__ import annotations

import logging

from compiler.artifact import Artifact
from compiler.ir.graph import Graph, Node
from compiler.partition import hetero_artifact, split
from compiler.passes.manager import PassSpec
from compiler.targets.base import Target, Unsupported, get_target, register_target
from compiler.targets.ref import RefTarget

log = logging.getLogger("kiln.hetero")


@register_target
class HeteroTarget(Target):
    name = "hetero"
    composite = True
    description = "parts on several targets by support and priority: hetero:gpu,cpu"

    def __init__(self, spec: str = ""):
        self.devices = [device.strip() for device in spec.split(",") if device.strip()]
        if not self.devices:
            raise ValueError("the hetero target needs its targets in priority order, e.g. hetero:gpu,cpu")
        if "hetero" in self.devices or len(set(self.devices)) != len(self.devices):
            raise ValueError(f"hetero:{spec}: list each target once, and not hetero itself")
        self.targets = {device: get_target(device) for device in self.devices}

    def device_of(self, graph: Graph, node: Node) -> str | None:
        """The first target in priority order that can compile `node`; None when none can."""
        return next((d for d, target in self.targets.items() if target.node_problem(graph, node) is None), None)

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        problems = []
        for node in graph.nodes():
            if not (node.is_input or node.is_constant) and self.device_of(graph, node) is None:
                reasons = "; ".join(f"{d}: {t.node_problem(graph, node)}" for d, t in self.targets.items())
                problems.append(Unsupported(node.name, node.qualified_op, f"no target of hetero can run it ({reasons})"))
        return problems

    def pipeline(self, options: dict) -> list[PassSpec]:
        return [PassSpec("fold-constants", why="shape computations need no part of their own"),
                PassSpec("eliminate-common-subexpressions", why="one node per computation before the split"),
                *RefTarget().pipeline(options)]

    def emit(self, graph: Graph, options: dict) -> Artifact:
        from compiler.driver import compile

        parts = split(graph, lambda node: self.device_of(graph, node))
        for index, part in enumerate(parts):
            log.info("hetero part %d on %s: %s", index, part.device, ", ".join(node.name for node in part.nodes))
        return hetero_artifact(graph, parts, lambda part, sub: compile(sub, part.device, **options))
