"""Half storage for the gpu target at precision fp16: float32 tensors become float16, except what
the fp16 check keeps (compiler/precision/fp16_check.py).

Kernels compute half values in float, so storage (and bandwidth) halves. A kernel's float inputs
share one type, so a node that reads a kept float32 value computes in float32 too: its half inputs
are widened by a Cast before it, and its results (which fit float16, or it would be kept) narrowed
by a Cast after it for the half nodes that read them.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from compiler.passes.widen_half_floats import _cast
from compiler.precision.fp16_check import Fp16Plan, float32_nodes


def _is_float32(value_type) -> bool:
    return isinstance(value_type, TensorType) and value_type.dtype == "float32"


def stored_in_half(graph: Graph, plan: Fp16Plan | None = None) -> Graph:
    """A copy of `graph` with half storage, keeping `plan`'s nodes and weights in float32."""
    plan = plan or Fp16Plan()
    graph = graph.copy()
    wide = float32_nodes(graph, plan)
    halved = set()
    for node in graph.nodes():
        if node.name in wide or node.name in plan.kept_weights:
            continue
        if node.is_constant and np.asarray(node.attrs["value"]).dtype == np.float32:
            node.attrs = {**node.attrs, "value": np.asarray(node.attrs["value"]).astype(np.float16)}
        if any(_is_float32(t) for t in node.outputs):
            halved.add(node.name)
            node.outputs = [TensorType("float16", t.shape) if _is_float32(t) else t for t in node.outputs]
    widened: dict[Value, Value] = {}  # one Cast per half value, shared by its float32 readers
    for name in sorted(wide):
        node = graph.node(name)
        for index, (value, value_type) in enumerate(zip(graph.input_values(node), graph.input_types(node))):
            if value is not None and value.node in halved and isinstance(value_type, TensorType) \
                    and value_type.dtype == "float16":
                if value not in widened:
                    widened[value] = _cast(graph, value, value_type, "float32", f"{graph.value_name(value)}.widen")
                graph.set_input(name, index, widened[value])
        if name in plan.kept_nodes:
            continue
        for index, value_type in enumerate(node.outputs):
            readers = [(reader, slot) for reader, slot in graph.uses(Value(name, index)) if reader not in wide]
            if _is_float32(value_type) and readers:
                narrow = _cast(graph, Value(name, index), value_type, "float16", f"{name}.narrow{index}")
                for reader, slot in readers:
                    graph.set_input(reader, slot, narrow)
    return graph
