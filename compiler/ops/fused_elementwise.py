"""kiln::FusedElementwise: a chain of elementwise ONNX ops computed as one node.

The fuse-elementwise pass (compiler/passes/fuse_elementwise.py) builds it so a target can
evaluate the whole expression per element in one loop. Attribute `steps` holds the
expression as a list of [op_type, version, [[attribute, value], ...], operands]: each
operand numbers a value, the node's inputs first (0 .. num_inputs-1), then the results of
earlier steps (num_inputs + step index), or is None for an absent optional input. The
last step gives the node's output. Attribute `fused_nodes` names the original nodes, in
step order. Lists (not dicts) keep the attribute JSON-ready and hashable once frozen.

Inference and reference semantics are those of each step's own ONNX op, so the ref target,
fold-constants and the verifier see exactly what the unfused nodes computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ops.registry import OpDef, infer_node, lookup, register

OP_TYPE = "FusedElementwise"


@dataclass(frozen=True)
class Step:
    """One op of the expression: `node` carries its op type, version and attributes (what op
    kernels and inference read); `operands` number the values it reads."""

    node: Node
    operands: tuple[int | None, ...]


def encode_step(node: Node, operands: list[int | None]) -> list:
    """The `steps` attribute entry for `node` reading `operands`."""
    return [node.op_type, node.version, [[name, value] for name, value in sorted(node.attrs.items())], operands]


def steps_of(node: Node) -> list[Step]:
    steps = []
    for index, (op_type, version, attrs, operands) in enumerate(node.attrs["steps"]):
        name = f"{node.name}.{index}"
        step = Node(name, op_type, "", version, dict(attrs), len(operands), [None], [name])
        steps.append(Step(step, tuple(operands)))
    return steps


def first_step_problem(steps: list[Step], dtypes: list,
                       step_problem: Callable[[Node, list, str], str | None]) -> str | None:
    """"step i: why" for the first of `steps` a target cannot compute (its `step_problem(step node,
    operand dtypes, result dtype)`), else None. `dtypes` numbers every value the steps read and make,
    their results last."""
    first = len(dtypes) - len(steps)
    for index, step in enumerate(steps):
        problem = step_problem(step.node, [None if ref is None else dtypes[ref] for ref in step.operands],
                               dtypes[first + index])
        if problem:
            return f"step {index} ({step.node.op_type}): {problem}"
    return None


def value_types(node: Node, input_types: list) -> list:
    """Types of every value the expression numbers: the inputs', then each step's result."""
    types = list(input_types)
    for step in steps_of(node):
        operand_types = [None if ref is None else types[ref] for ref in step.operands]
        types.append(infer_node(step.node, operand_types, [None] * len(operand_types))[0])
    return types


def _infer(node: Node, input_types: list, input_values: list) -> list:
    if any(t is None for t in input_types):
        return [None]
    return [value_types(node, input_types)[-1]]


def _kernel(node: Node, input_types: list, present: list):
    steps = steps_of(node)
    types = value_types(node, input_types)
    kernels = []
    for step in steps:
        operand_types = [None if ref is None else types[ref] for ref in step.operands]
        kernels.append(lookup(step.node.op_type).kernel(step.node, operand_types, [r is not None for r in step.operands]))

    def kernel(inputs: list) -> list:
        values = list(inputs)
        for step, step_kernel in zip(steps, kernels):
            values.append(step_kernel([None if ref is None else values[ref] for ref in step.operands])[0])
        return [values[-1]]

    return kernel


register(OpDef(OP_TYPE, KILN_DOMAIN, "fused", _infer, _kernel))
