"""Control flow with subgraphs: If, Loop, Scan and SequenceMap.

Subgraphs are IR graphs in node attributes. Values a subgraph reads from the enclosing
graph are explicit: the frontend appends them as trailing inputs of the node and as
trailing inputs of every subgraph of that node (marked with a `captured_from` attribute),
so the kernels below only pass them through.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node
from compiler.ir.types import SequenceType, TensorType, numpy_dtype
from compiler.ops.registry import OpDef, register


def captured_count(graph: Graph) -> int:
    """How many trailing inputs of a subgraph carry values captured from the enclosing graph."""
    return sum(1 for name in graph.inputs if "captured_from" in graph.node(name).attrs)


def _output_types(graph: Graph) -> list:
    return [graph.type_of(value) for _, value in graph.outputs]


def _merge(a, b):
    """The most precise type that covers both branch types."""
    if a == b:
        return a
    if isinstance(a, TensorType) and isinstance(b, TensorType) and a.dtype == b.dtype:
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            return TensorType(a.dtype, None)
        return TensorType(a.dtype, tuple(x if x == y else None for x, y in zip(a.shape, b.shape)))
    return None


def _stacked(value_type):
    """Type of per-iteration values of `value_type` stacked along a new leading axis."""
    if isinstance(value_type, TensorType) and value_type.shape is not None:
        return TensorType(value_type.dtype, (None, *value_type.shape))
    return TensorType(value_type.dtype, None) if isinstance(value_type, TensorType) else None


def _interpreter(graph: Graph):
    from compiler.ops.interpreter import Interpreter

    return Interpreter(graph)


# ----- If -------------------------------------------------------------------------------
def _infer_if(node: Node, input_types, input_values):
    then_types = _output_types(node.attrs["then_branch"])
    else_types = _output_types(node.attrs["else_branch"])
    return [_merge(a, b) for a, b in zip(then_types, else_types)]


def _if_kernel(node: Node, input_types, present):
    then_branch = _interpreter(node.attrs["then_branch"])
    else_branch = _interpreter(node.attrs["else_branch"])

    def kernel(inputs):
        branch = then_branch if bool(np.asarray(inputs[0]).reshape(-1)[0]) else else_branch
        return branch.run(inputs[1:])

    return kernel


# ----- Loop -----------------------------------------------------------------------------
def _loop_carried(node: Node) -> int:
    body = node.attrs["body"]
    return len(body.inputs) - 2 - captured_count(body)


def _infer_loop(node: Node, input_types, input_values):
    carried = _loop_carried(node)
    body_types = _output_types(node.attrs["body"])
    state = [t if t is not None else body_types[1 + i] for i, t in enumerate(input_types[2: 2 + carried])]
    return state + [_stacked(t) for t in body_types[1 + carried:]]


def _loop_kernel(node: Node, input_types, present):
    body = _interpreter(node.attrs["body"])
    carried = _loop_carried(node)
    scan_types = _output_types(node.attrs["body"])[1 + carried:]

    def kernel(inputs):
        trip_count, condition = inputs[0], inputs[1]
        state, captured = list(inputs[2: 2 + carried]), inputs[2 + carried:]
        limit = None if trip_count is None else int(np.asarray(trip_count).reshape(-1)[0])
        keep_going = True if condition is None else bool(np.asarray(condition).reshape(-1)[0])
        scans = [[] for _ in scan_types]
        iteration = 0
        while keep_going and (limit is None or iteration < limit):
            outputs = body.run([np.array(iteration, dtype=np.int64), np.array(keep_going), *state, *captured])
            keep_going = bool(np.asarray(outputs[0]).reshape(-1)[0])
            state = outputs[1: 1 + carried]
            for collected, value in zip(scans, outputs[1 + carried:]):
                collected.append(value)
            iteration += 1
        stacked = [np.stack(values) if values else np.zeros((0,), numpy_dtype(t.dtype) if t else np.float32)
                   for values, t in zip(scans, scan_types)]
        return state + stacked

    return kernel


# ----- Scan (opset 9 and later) ---------------------------------------------------------
def _scan_layout(node: Node):
    body = node.attrs["body"]
    num_scan_inputs = node.attrs["num_scan_inputs"]
    num_state = len(body.inputs) - num_scan_inputs - captured_count(body)
    num_scan_outputs = len(body.outputs) - num_state
    return num_state, num_scan_inputs, num_scan_outputs


def _infer_scan(node: Node, input_types, input_values):
    num_state, _, _ = _scan_layout(node)
    body_types = _output_types(node.attrs["body"])
    return body_types[:num_state] + [_stacked(t) for t in body_types[num_state:]]


def _scan_kernel(node: Node, input_types, present):
    if node.version is not None and node.version < 9:
        raise NotImplementedError(f"node {node.name!r}: Scan-8 (batched, with sequence_lens) is not supported; "
                                  "re-export the model with opset 9 or later")
    body = _interpreter(node.attrs["body"])
    num_state, num_in, num_out = _scan_layout(node)
    in_axes = node.attrs.get("scan_input_axes", [0] * num_in)
    in_reverse = node.attrs.get("scan_input_directions", [0] * num_in)
    out_axes = node.attrs.get("scan_output_axes", [0] * num_out)
    out_reverse = node.attrs.get("scan_output_directions", [0] * num_out)

    def kernel(inputs):
        state = list(inputs[:num_state])
        sequences = inputs[num_state: num_state + num_in]
        captured = inputs[num_state + num_in:]
        length = sequences[0].shape[in_axes[0]]
        collected = [[] for _ in range(num_out)]
        for step in range(length):
            slices = [np.take(seq, length - 1 - step if rev else step, axis=axis)
                      for seq, axis, rev in zip(sequences, in_axes, in_reverse)]
            outputs = body.run([*state, *slices, *captured])
            state = outputs[:num_state]
            for values, value in zip(collected, outputs[num_state:]):
                values.append(value)
        results = []
        for values, axis, rev in zip(collected, out_axes, out_reverse):
            values = values[::-1] if rev else values
            results.append(np.stack(values, axis=axis if axis >= 0 else axis + values[0].ndim + 1))
        return state + results

    return kernel


# ----- SequenceMap ----------------------------------------------------------------------
def _infer_sequence_map(node: Node, input_types, input_values):
    return [SequenceType(t) if t is not None else None for t in _output_types(node.attrs["body"])]


def _sequence_map_kernel(node: Node, input_types, present):
    body_graph = node.attrs["body"]
    body = _interpreter(body_graph)
    mapped = len(body_graph.inputs) - captured_count(body_graph)

    def kernel(inputs):
        own, captured = inputs[:mapped], inputs[mapped:]
        results = [[] for _ in body_graph.outputs]
        for i in range(len(inputs[0])):
            feeds = [value[i] if isinstance(value, list) else value for value in own]
            for collected, value in zip(results, body.run([*feeds, *captured])):
                collected.append(value)
        return results

    return kernel


register(OpDef("If", "", "control_flow", _infer_if, _if_kernel))
register(OpDef("Loop", "", "control_flow", _infer_loop, _loop_kernel))
register(OpDef("Scan", "", "control_flow", _infer_scan, _scan_kernel))
register(OpDef("SequenceMap", "", "control_flow", _infer_sequence_map, _sequence_map_kernel))
