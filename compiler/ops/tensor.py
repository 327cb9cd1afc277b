"""Shape and data movement: reshape, transpose, slicing, gather/scatter, padding, resizing."""

import math

from compiler.ir.graph import Node
from compiler.ir.types import TensorType
from compiler.ops.onnx_semantics import OpInferenceError, infer_with_schema, onnx_ops, onnx_reference_kernel
from compiler.ops.registry import OpDef, register

SHAPE = ["Flatten", "Squeeze", "Unsqueeze", "Transpose", "Expand", "Tile", "Shape", "Size",
         "DepthToSpace", "SpaceToDepth"]
JOIN_SPLIT = ["Concat", "Split", "Slice", "Pad", "CenterCropPad", "Compress", "ReverseSequence", "Trilu"]
INDEXING = ["Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND", "TensorScatter",
            "OneHot", "NonZero", "Unique"]
RESAMPLING = ["Resize", "Upsample", "GridSample", "AffineGrid"]
DETECTION = ["NonMaxSuppression"]

onnx_ops("tensor", SHAPE + JOIN_SPLIT + INDEXING + RESAMPLING + DETECTION)


def _infer_reshape(node: Node, input_types, input_values) -> list:
    """The schema's inference, which does not check that the element count is kept: with both shapes
    known, a reshape that changes it (often a new input shape reaching a reshape to fixed dims) is
    reported here, at the node, instead of computing garbage."""
    outputs = infer_with_schema(node, input_types, input_values)
    data, result = input_types[0], outputs[0]
    if (isinstance(data, TensorType) and isinstance(result, TensorType) and data.is_static and result.is_static
            and math.prod(data.shape) != math.prod(result.shape)):
        shape = None if input_values[1] is None else input_values[1].tolist()
        raise OpInferenceError(f"node {node.name!r} (Reshape): cannot reshape {list(data.shape)} "
                               f"({math.prod(data.shape)} elements) to {shape} -> {list(result.shape)} "
                               f"({math.prod(result.shape)} elements); if the input shapes were changed (shapes=, "
                               "--shape), this reshape's target shape does not follow them")
    return outputs


register(OpDef("Reshape", "", "tensor", _infer_reshape, onnx_reference_kernel))


def _scatter_kernel(node: Node, input_types, present):
    """Scatter-9 (deprecated) means ScatterElements-11; onnx only implements the latter."""
    elements = Node(node.name, "ScatterElements", "", 11, dict(node.attrs), node.num_inputs,
                    list(node.outputs), list(node.output_names))
    return onnx_reference_kernel(elements, input_types, present)


register(OpDef("Scatter", "", "tensor", infer_with_schema, _scatter_kernel))
