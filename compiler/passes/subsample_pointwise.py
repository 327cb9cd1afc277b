"""subsample-pointwise: a strided 1x1 Conv becomes a strided Slice, then a stride-1 1x1 Conv.

ResNet's projection shortcuts are 1x1 convs of stride 2. Stride 1, such a conv is one GEMM over
contiguous pixels; strided, every packing of the GEMM's B panel gathers every other pixel, once per
block of output channels. Taking the pixels out first costs one copy of a quarter of the input,
and the conv then runs at the GEMM's speed (ResNet-50's three: 6.9 -> 4.9 ms for the convs and
their slices together, one core).
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassContext, log, register_pass

SLICE_VERSION = 13


def _strided_pointwise(graph: Graph, node: Node) -> bool:
    if node.domain != "" or node.op_type != "Conv":
        return False
    x_type, w_type = graph.input_types(node)[:2]
    if not (isinstance(x_type, TensorType) and x_type.is_static and isinstance(w_type, TensorType)
            and w_type.is_static and len(x_type.shape) >= 3):
        return False
    spatial = len(x_type.shape) - 2
    strides = node.attrs.get("strides", [1] * spatial)
    return (all(size == 1 for size in w_type.shape[2:]) and any(stride > 1 for stride in strides)
            and not any(node.attrs.get("pads", [0] * 2 * spatial))
            and node.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID"))


@register_pass("subsample-pointwise")
def subsample_pointwise(graph: Graph, ctx: PassContext | None = None) -> Graph:
    for node in graph.topological_order():
        if not _strided_pointwise(graph, node):
            continue
        x = graph.input_values(node)[0]
        shape = graph.type_of(x).shape
        strides = list(node.attrs["strides"])
        axes = list(range(2, len(shape)))
        operands = [graph.add_constant(np.array(values, np.int64), f"{node.name}.subsample_{role}")
                    for role, values in (("starts", [0] * len(axes)), ("ends", list(shape[2:])), ("axes", axes),
                                         ("steps", strides))]
        sampled = TensorType(graph.type_of(x).dtype, (*shape[:2], *(-(-size // step) for size, step
                                                                   in zip(shape[2:], strides))))
        subsample = graph.add_node("Slice", [x, *operands], version=SLICE_VERSION, outputs=[sampled],
                                   name=f"{node.name}.subsample")
        graph.set_input(node, 0, Value(subsample.name))
        node.attrs["strides"] = [1] * len(axes)
        log.info("subsample-pointwise: %s reads its stride-%s pixels through a Slice", node.name, strides)
    return graph
