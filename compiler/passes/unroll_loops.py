"""Unroll Scan, and Loop with a constant trip count, into straight-line code.

A target without control flow (cpu) can still compile a loop whose iteration count is known
at compile time: the body is inlined once per iteration, slices of the scanned inputs come
from Gather, and per-iteration outputs are stacked with Unsqueeze + Concat. Function bodies
such as LinearAttention and Range are written with Scan/Loop, so this is what lets them
compile once their shapes are static. Loops longer than `max_iterations`, or whose body may
stop early, are left for the target to report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.control_flow import captured_count
from compiler.passes.common import inline
from compiler.passes.infer_types import infer_types
from compiler.passes.manager import PassContext, register_pass


def _stack(graph: Graph, values: list[Value], axis: int, prefix: str) -> Value:
    """The values stacked along a new `axis` (np.stack)."""
    axes = graph.add_constant(np.array([axis], np.int64), f"{prefix}/axis")
    expanded = [Value(graph.add_node("Unsqueeze", [value, axes], version=13, name=f"{prefix}/unsqueeze").name)
                for value in values]
    return Value(graph.add_node("Concat", expanded, {"axis": axis}, version=13, name=f"{prefix}/stack").name)


def _iteration_slice(graph: Graph, sequence: Value, index: int, axis: int, prefix: str) -> Value:
    position = graph.add_constant(np.array(index, np.int64), f"{prefix}/index")
    return Value(graph.add_node("Gather", [sequence, position], {"axis": axis}, version=13, name=f"{prefix}/slice").name)


def _rank(graph: Graph, value: Value) -> int | None:
    value_type = graph.type_of(value)
    return value_type.rank if isinstance(value_type, TensorType) else None


def _static_length(graph: Graph, value: Value, axis: int) -> int | None:
    value_type = graph.type_of(value)
    if not isinstance(value_type, TensorType) or value_type.shape is None:
        return None
    dim = value_type.shape[axis]
    return dim if isinstance(dim, int) else None


def _finish(graph: Graph, node: Node, results: list[Value]) -> None:
    for index, result in enumerate(results):
        graph.replace_all_uses(Value(node.name, index), result)
    graph.remove_node(node.name)


@register_pass("unroll-loops")
@dataclass(frozen=True)
class UnrollLoops:
    """`max_iterations`: longer loops stay loops (and the target reports them)."""

    max_iterations: int = 64

    def __call__(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        from compiler.targets.base import get_target

        target = get_target(ctx.target if ctx else "ref")
        changed = False
        for node in graph.topological_order():
            if node.domain != "" or node.op_type not in ("Scan", "Loop") or target.node_problem(graph, node) is None:
                continue
            unroll = self._unroll_scan if node.op_type == "Scan" else self._unroll_loop
            changed = unroll(graph, node) or changed
        return infer_types(graph, ctx) if changed else graph

    def _unroll_scan(self, graph: Graph, node: Node) -> bool:
        body = node.attrs["body"]
        num_in = node.attrs["num_scan_inputs"]
        num_state = len(body.inputs) - num_in - captured_count(body)
        num_out = len(body.outputs) - num_state
        operands = graph.input_values(node)
        state, sequences, captured = operands[:num_state], operands[num_state:num_state + num_in], operands[num_state + num_in:]
        in_axes = node.attrs.get("scan_input_axes", [0] * num_in)
        in_reverse = node.attrs.get("scan_input_directions", [0] * num_in)
        out_axes = node.attrs.get("scan_output_axes", [0] * num_out)
        out_reverse = node.attrs.get("scan_output_directions", [0] * num_out)
        ranks = [_rank(graph, sequence) for sequence in sequences]
        if None in ranks or (node.version or 9) < 9:
            return False
        in_axes = [axis % rank for axis, rank in zip(in_axes, ranks)]
        out_ranks = [_rank(body, value) for _, value in body.outputs[num_state:]]
        length = _static_length(graph, sequences[0], in_axes[0])
        if length is None or not 0 < length <= self.max_iterations:
            return False
        if any(axis < 0 and rank is None for axis, rank in zip(out_axes, out_ranks)):
            return False  # where a negative output axis lands depends on a rank not known yet
        out_axes = [axis if axis >= 0 else axis + rank + 1 for axis, rank in zip(out_axes, out_ranks)]
        collected: list[list[Value]] = [[] for _ in range(num_out)]
        for step in range(length):
            prefix = f"{node.name}/{step}"
            slices = [_iteration_slice(graph, sequence, length - 1 - step if reverse else step, axis, f"{prefix}/in{j}")
                      for j, (sequence, axis, reverse) in enumerate(zip(sequences, in_axes, in_reverse))]
            outputs = inline(graph, body, [*state, *slices, *captured], f"{prefix}/")
            state = outputs[:num_state]
            for values, value in zip(collected, outputs[num_state:]):
                values.append(value)
        stacked = [_stack(graph, values[::-1] if reverse else values, axis, f"{node.name}/out{k}")
                   for k, (values, axis, reverse) in enumerate(zip(collected, out_axes, out_reverse))]
        _finish(graph, node, [*state, *stacked])
        return True

    def _unroll_loop(self, graph: Graph, node: Node) -> bool:
        body = node.attrs["body"]
        operands = graph.input_values(node)
        trip_count, condition = graph.constant_value(operands[0]), graph.constant_value(operands[1])
        if trip_count is None or (operands[1] is not None and (condition is None or not condition.reshape(-1)[0])):
            return False
        length = int(trip_count.reshape(-1)[0])
        if not 0 < length <= self.max_iterations or not _keeps_going(body):
            return False
        carried = len(body.inputs) - 2 - captured_count(body)
        state, captured = operands[2:2 + carried], operands[2 + carried:]
        true = graph.add_constant(np.array(True), f"{node.name}/true")
        collected: list[list[Value]] = [[] for _ in body.outputs[1 + carried:]]
        for step in range(length):
            prefix = f"{node.name}/{step}"
            iteration = graph.add_constant(np.array(step, np.int64), f"{prefix}/iteration")
            outputs = inline(graph, body, [iteration, true, *state, *captured], f"{prefix}/")
            state = outputs[1:1 + carried]
            for values, value in zip(collected, outputs[1 + carried:]):
                values.append(value)
        stacked = [_stack(graph, values, 0, f"{node.name}/out{k}") for k, values in enumerate(collected)]
        _finish(graph, node, [*state, *stacked])
        return True


def _keeps_going(body: Graph) -> bool:
    """Whether the body's condition output is always true: the condition input passed through
    (directly or by Identity) or a constant true."""
    value = body.outputs[0][1]
    while True:
        producer = body.node(value.node)
        if producer.name == body.inputs[1]:
            return True
        if producer.is_constant:
            return bool(np.asarray(producer.attrs["value"]).reshape(-1)[0])
        if producer.op_type != "Identity":
            return False
        value = body.input_values(producer)[0]

