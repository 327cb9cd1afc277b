"""Mask the padding of a dynamic extent where an op would mix it into valid positions.

With a dynamic extent (compiler/dynamic_extent.py: `shapes={"ids": ["1..8", "1..512"]}`) the graph is
compiled with the dim padded to its bound. A Softmax, a reduction or a contraction over the dim would
read the padding; this pass puts a kiln::MaskTail in front of each such input, filling positions >= s
with -inf (softmax, max) or 0 (sum, product of matrices), so they drop out. It runs after the shapes
fold and before fusion, and does nothing without the `dynamic_extent` option. A contraction operand
computed by a masked softmax over the same axis already holds exact zeros past s and is read as is.
Ops the padding would leak through in other ways are refused here, naming the node.
"""

from __future__ import annotations

from compiler.dynamic_extent import DynamicExtentError, ExtentBounds
from compiler.extent_rules import MASK_OP, ExtentProblem, Mask, is_masked, propagate
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassContext, register_pass


@register_pass("mask-dynamic-tails")
def mask_dynamic_tails(graph: Graph, ctx: PassContext | None = None) -> Graph:
    bounds = ExtentBounds.from_options(ctx.options if ctx else {})
    inputs = [graph.type_of(Value(name)) for name in graph.inputs]
    if bounds is None or not all(isinstance(t, TensorType) and t.is_static for t in inputs):
        return graph  # an input without a static shape: the target refuses the graph, naming it

    def insert(node: Node, masks: list[Mask]) -> None:
        for mask in masks:
            source = graph.input_values(node)[mask.input]
            if is_masked(graph, source, mask):
                continue
            masked = graph.add_node(MASK_OP, [source], {"axis": mask.axis, "inner": mask.inner, "bound": bounds.high,
                                                        "fill": mask.fill}, domain=KILN_DOMAIN,
                                    outputs=[graph.type_of(source)], name=f"{node.name}_tail{mask.input}")
            graph.set_input(node, mask.input, Value(masked.name))

    try:
        propagate(graph, dict(bounds.inputs), bounds.high, bounds.low, insert)
    except ExtentProblem as problem:
        raise DynamicExtentError(str(problem)) from None
    return graph
