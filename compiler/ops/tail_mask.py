"""kiln::MaskTail: the padding of a dynamic extent read as a chosen value (compiler/dynamic_extent.py).

Inputs: X. Attributes: `axis`, `inner`, `bound` (along `axis`, index i is position (i // inner) % bound
of the dynamic dim) and `fill`. The output is X with every element at a position >= s set to `fill`,
s being the extent of the call, which compiled code reads at run time. Compiled at the bound, as the
graph is, s is the bound, so inference and reference semantics are those of Identity.
"""

from __future__ import annotations

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ops.registry import OpDef, register

OP_TYPE = "MaskTail"


def _infer(node: Node, input_types: list, input_values: list) -> list:
    return [input_types[0]]


def _kernel(node: Node, input_types: list, present: list):
    return lambda inputs: [inputs[0]]


register(OpDef(OP_TYPE, KILN_DOMAIN, "dynamic_extent", _infer, _kernel))
