"""The Target interface and the target registry.

A target says which ops it supports (and why not), which passes prepare a graph for it,
and how to emit an Artifact from the prepared graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.artifact import Artifact
from compiler.ir.graph import Graph
from compiler.passes.manager import PassSpec
from compiler.submodules import import_submodules


@dataclass(frozen=True)
class Unsupported:
    """One thing a target cannot compile: where, what and why."""

    node: str
    op: str
    reason: str


def boundary_types(graph: Graph) -> list[tuple[str, object]]:
    """(name, type) of every graph input, then every graph output: what the caller's buffers hold."""
    return [(name, graph.node(name).outputs[0]) for name in graph.inputs] + \
        [(name, graph.type_of(value)) for name, value in graph.outputs]


class Target:
    name: str = ""
    description: str = ""
    composite = False  # made of other targets, named "name:spec" (hetero:gpu,cpu)

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        """Everything in `graph` this target cannot compile (empty when all is fine)."""
        raise NotImplementedError

    def node_problem(self, graph: Graph, node) -> str | None:
        """Why this target cannot compile `node` as it is (None when it can)."""
        return None

    def node_problems(self, graph: Graph) -> list[Unsupported]:
        """Every operation node of `graph` that `node_problem` refuses, with the reason."""
        return [Unsupported(node.name, node.qualified_op, problem) for node in graph.nodes()
                if not (node.is_input or node.is_constant) and (problem := self.node_problem(graph, node))]

    def pipeline(self, options: dict) -> list[PassSpec]:
        raise NotImplementedError

    def emit(self, graph: Graph, options: dict) -> Artifact:
        raise NotImplementedError


_TARGETS: dict[str, type[Target]] = {}


def register_target(cls: type[Target]) -> type[Target]:
    _TARGETS[cls.name] = cls
    return cls


def _load_targets() -> None:
    """Import every target module once; each registers itself."""
    import_submodules("compiler.targets", frozenset({"base", "ref_executor"}))


def get_target(name: str) -> Target:
    """The target `name`; "name:spec" passes `spec` to targets made of others (hetero:gpu,cpu)."""
    _load_targets()
    base, colon, spec = name.partition(":")
    if base not in _TARGETS:
        raise ValueError(f"unknown target {name!r}; available targets: {', '.join(sorted(_TARGETS))}")
    return _TARGETS[base](spec) if colon else _TARGETS[base]()


def target_names(composite: bool = True) -> list[str]:
    """Registered target names (`composite=False`: only those that compile on their own)."""
    _load_targets()
    return sorted(name for name, cls in _TARGETS.items() if composite or not cls.composite)
