"""Image decoding (needs Pillow at run time, as onnx.reference does)."""

from compiler.ops.onnx_semantics import onnx_ops

onnx_ops("image", ["ImageDecoder"])
