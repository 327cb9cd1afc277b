"""Shape and data movement: reshape, transpose, slicing, gather/scatter, padding, resizing."""

from compiler.ir.graph import Node
from compiler.ops.onnx_semantics import infer_with_schema, onnx_ops, onnx_reference_kernel
from compiler.ops.registry import OpDef, register

SHAPE = ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Expand", "Tile", "Shape", "Size",
         "DepthToSpace", "SpaceToDepth"]
JOIN_SPLIT = ["Concat", "Split", "Slice", "Pad", "CenterCropPad", "Compress", "ReverseSequence", "Trilu"]
INDEXING = ["Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND", "TensorScatter",
            "OneHot", "NonZero", "Unique"]
RESAMPLING = ["Resize", "Upsample", "GridSample", "AffineGrid"]
DETECTION = ["NonMaxSuppression"]

onnx_ops("tensor", SHAPE + JOIN_SPLIT + INDEXING + RESAMPLING + DETECTION)


def _scatter_kernel(node: Node, input_types, present):
    """Scatter-9 (deprecated) means ScatterElements-11; onnx only implements the latter."""
    elements = Node(node.name, "ScatterElements", "", 11, dict(node.attrs), node.num_inputs,
                    list(node.outputs), list(node.output_names))
    return onnx_reference_kernel(elements, input_types, present)


register(OpDef("Scatter", "", "tensor", infer_with_schema, _scatter_kernel))
