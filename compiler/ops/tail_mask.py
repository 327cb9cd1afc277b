"""kiln::MaskTail and kiln::ExtentScale: the padding of dynamic extents (compiler/dynamic_extent.py).

MaskTail(X), attributes `axis`, `inner`, `bound` (along `axis`, index i is position (i // inner) % bound
of a dynamic dim), `extent` (compiler/extent_types.Extent as JSON: which dim, and the window steps that
give the valid positions from its size), `reach` and `fill`: X with every element at the first `reach`
positions past the valid ones set to `fill` (a window reads no further). ExtentScale(X), attributes `extents` and their `bounds`: X times the product of the
bounds over the product of the valid sizes, which turns a mean over the bounds into one over the valid
positions. Compiled code reads the sizes of the call at run time. At the bounds, as the graph is
compiled, both are the identity, so that is their inference and reference semantics.
"""

from __future__ import annotations

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ops.registry import OpDef, register

OP_TYPE, SCALE_OP_TYPE = "MaskTail", "ExtentScale"


def _infer(node: Node, input_types: list, input_values: list) -> list:
    return [input_types[0]]


def _kernel(node: Node, input_types: list, present: list):
    return lambda inputs: [inputs[0]]


register(OpDef(OP_TYPE, KILN_DOMAIN, "dynamic_extent", _infer, _kernel))
register(OpDef(SCALE_OP_TYPE, KILN_DOMAIN, "dynamic_extent", _infer, _kernel))
