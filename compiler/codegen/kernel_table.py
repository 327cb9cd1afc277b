"""The op -> kernel table each code-generating target keeps (cpu: llvm/kernels, gpu: opencl/kernels).

Kernel modules register their specs on import; the table imports its package's modules the first
time it is asked. Ops of the default domain are keyed by op type, others by their qualified name
("ai.onnx.ml::Binarizer"). A spec's optional `in_place(graph, node)` names the input whose storage
the output may take, which the memory plan asks through `in_place_input`.
"""

from __future__ import annotations

from compiler.ir.graph import Graph, Node
from compiler.submodules import import_submodules


class KernelTable:
    def __init__(self, target: str, package: str, skip: frozenset[str]):
        self.target, self.package, self.skip = target, package, skip
        self._specs: dict = {}

    def register(self, spec):
        for op_type in spec.op_types:
            if op_type in self._specs:
                raise ValueError(f"two {self.target} kernels claim op {op_type}")
            self._specs[op_type] = spec
        return spec

    def _load(self) -> None:
        import_submodules(self.package, self.skip)

    def lookup(self, node: Node):
        self._load()
        return self._specs.get(node.op_type if node.domain == "" else node.qualified_op)

    def op_types(self) -> list[str]:
        self._load()
        return sorted(self._specs)

    def in_place_input(self, graph: Graph, node: Node) -> int | None:
        spec = self.lookup(node)
        return spec.in_place(graph, node) if spec is not None and spec.in_place is not None else None


def node_entry(graph: Graph, node: Node, symbol: str) -> dict:
    """One profiled kernel: its symbol, op, the original graph nodes it computes and its operand shapes."""
    return {"symbol": symbol, "op_type": node.qualified_op, "nodes": list(node.attrs.get("fused_nodes", [node.name])),
            "input_shapes": [None if t is None else list(t.shape) for t in graph.input_types(node)],
            "output_shapes": [list(t.shape) for t in node.outputs]}
