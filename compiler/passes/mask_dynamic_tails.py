"""Mask the padding of dynamic extents where an op would mix it into valid positions.

With dynamic extents (compiler/dynamic_extent.py: `shapes={"ids": ["1..8", "1..512"]}`) the graph is
compiled with each dim padded to its bound. A Softmax, a reduction, a product or a convolution over
the dim would read the padding; this pass puts a kiln::MaskTail in front of each such input, filling
the positions past the valid ones with -inf (softmax, max) or 0 (sum, product, convolution), so they
drop out, and a kiln::ExtentScale after a GlobalAveragePool over the dim, which divided by the bound's
count. It runs after the shapes fold and before fusion, and does nothing without the `dynamic_extent`
option. A product's operand computed by a masked softmax over the same axis already holds exact zeros
there and is read as is. Ops the padding would leak through in other ways are refused here, naming
the node.
"""

from __future__ import annotations

from compiler.dynamic_extent import DynamicExtentError, ExtentBounds
from compiler.extent_rules import MASK_OP, SCALE_OP, is_masked, mask_attributes, propagate
from compiler.extent_types import Effect, ExtentProblem
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassContext, register_pass


@register_pass("mask-dynamic-tails")
def mask_dynamic_tails(graph: Graph, ctx: PassContext | None = None) -> Graph:
    bounds = ExtentBounds.from_options(ctx.options if ctx else {})
    inputs = [graph.type_of(Value(name)) for name in graph.inputs]
    if bounds is None or not all(isinstance(t, TensorType) and t.is_static for t in inputs):
        return graph  # an input without a static shape: the target refuses the graph, naming it

    def apply(node: Node, effect: Effect) -> None:
        for mask in effect.masks:
            source = graph.input_values(node)[mask.input]
            if is_masked(graph, source, mask, bounds.ranges):
                continue
            bound = mask.extent.size(bounds.dims[mask.extent.dim].high)  # an axis may hold several periods
            masked = graph.add_node(MASK_OP, [source], mask_attributes(mask, bound), domain=KILN_DOMAIN,
                                    outputs=[graph.type_of(source)], name=f"{node.name}_tail{mask.input}")
            graph.set_input(node, mask.input, Value(masked.name))
        if effect.rescale:
            output = Value(node.name)
            bounds_of = [extent.size(bounds.dims[extent.dim].high) for extent in effect.rescale]
            scaled = graph.add_node(SCALE_OP, [output], {"extents": [extent.to_json() for extent in effect.rescale],
                                                         "bounds": bounds_of}, domain=KILN_DOMAIN,
                                    outputs=[node.outputs[0]], name=f"{node.name}_rescaled")
            graph.replace_all_uses(output, Value(scaled.name))
            graph.set_input(scaled, 0, output)  # its own input, which the line above pointed at itself

    try:
        propagate(graph, bounds.inputs, bounds.ranges, apply)
    except ExtentProblem as problem:
        raise DynamicExtentError(str(problem)) from None
    return graph
