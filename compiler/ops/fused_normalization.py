"""kiln::FusedSoftmax and kiln::FusedLayerNormalization: a Softmax or LayerNormalization computing its
input X from its elementwise producers in the same kernel.

The fuse-normalization pass (compiler/passes/fuse_normalization.py) builds them, so that the
scale/mask Add/Mul before a Softmax or the residual Add before a LayerNormalization write no
tensor of their own, and the decomposed LayerNorm exporters emit (ReduceMean, Sub, Pow, ...)
becomes one kernel. Inputs: the base op's inputs after X, in their positions (LayerNormalization:
Scale, then B or None; Softmax: none), then the prologue's operands. Attributes: the base op's
own, plus
- `prologue`: the steps computing X, encoded as fused_elementwise's `steps`; operands number the
  prologue's operands, then the results of earlier steps. X is the last value: the last step's
  result, or the only operand when there are no steps (a decomposed LayerNorm reading X as is).
- `fused_nodes`: the original nodes' names in topological order, so profiles map back to them.

Inference and reference semantics are the prologue steps' own, then the base op's.
"""

from __future__ import annotations

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ops.fused_elementwise import Step, steps_of, value_types
from compiler.ops.registry import OpDef, lookup, register

BASES = {"FusedSoftmax": ("Softmax", 0), "FusedLayerNormalization": ("LayerNormalization", 2)}
"""Fused op type -> (base op type, number of base op inputs after X)."""
FUSED = {base: fused for fused, (base, _) in BASES.items()}
FUSION_ATTRIBUTES = ("prologue", "fused_nodes")


def base_node(node: Node) -> Node:
    """The base op alone (its attributes, X then its other inputs), under the fused node's name."""
    op_type, count = BASES[node.op_type]
    attrs = {key: value for key, value in node.attrs.items() if key not in FUSION_ATTRIBUTES}
    return Node(node.name, op_type, "", node.version, attrs, 1 + count, [None], list(node.output_names))


def split_inputs(node: Node, items: list) -> tuple[list, list]:
    """(the base op's inputs after X, the prologue's operands) of a list that follows the node's inputs."""
    count = BASES[node.op_type][1]
    return list(items[:count]), list(items[count:])


def prologue_steps(node: Node) -> list[Step]:
    return steps_of(_as_elementwise(node))


def prologue_types(node: Node, operand_types: list) -> list:
    """Types of every value the prologue numbers: its operands', then each step's result (X last)."""
    return value_types(_as_elementwise(node), operand_types)


def _as_elementwise(node: Node) -> Node:
    return Node(node.name, "FusedElementwise", KILN_DOMAIN, None, {"steps": node.attrs["prologue"]})


def _infer(node: Node, input_types: list, input_values: list) -> list:
    parameters, operands = split_inputs(node, input_types)
    if any(t is None for t in operands):
        return [None]
    base = base_node(node)
    x_type = prologue_types(node, operands)[-1]
    return [lookup(base.op_type).infer(base, [x_type, *parameters], [None] * base.num_inputs)[0]]


def _kernel(node: Node, input_types: list, present: list):
    base = base_node(node)
    parameter_types, operand_types = split_inputs(node, input_types)
    types = prologue_types(node, operand_types)
    steps = prologue_steps(node)
    step_kernels = [lookup(step.node.op_type).kernel(step.node,
                                                     [None if ref is None else types[ref] for ref in step.operands],
                                                     [ref is not None for ref in step.operands])
                    for step in steps]
    base_kernel = lookup(base.op_type).kernel(base, [types[-1], *parameter_types],
                                              [True, *split_inputs(node, present)[0]])

    def kernel(inputs: list) -> list:
        parameters, values = split_inputs(node, inputs)
        for step, step_kernel in zip(steps, step_kernels):
            values.append(step_kernel([None if ref is None else values[ref] for ref in step.operands])[0])
        return [base_kernel([values[-1], *parameters])[0]]

    return kernel


for _op_type in BASES:
    register(OpDef(_op_type, KILN_DOMAIN, "fused", _infer, _kernel))
