"""Shape and data movement: reshape, transpose, slicing, gather/scatter, padding, resizing."""

from compiler.ops.onnx_semantics import onnx_ops

SHAPE = ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Expand", "Tile", "Shape", "Size",
         "DepthToSpace", "SpaceToDepth"]
JOIN_SPLIT = ["Concat", "Split", "Slice", "Pad", "CenterCropPad", "Compress", "ReverseSequence", "Trilu"]
INDEXING = ["Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND", "TensorScatter",
            "OneHot", "NonZero", "Unique"]
RESAMPLING = ["Resize", "Upsample", "GridSample", "AffineGrid"]
DETECTION = ["NonMaxSuppression"]

onnx_ops("tensor", SHAPE + JOIN_SPLIT + INDEXING + RESAMPLING + DETECTION)
