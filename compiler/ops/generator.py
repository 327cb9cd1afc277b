"""Ops that make tensors from shapes or seeds: constants of a shape, ranges, windows, random draws."""

from compiler.ops.onnx_semantics import onnx_ops

DETERMINISTIC = ["ConstantOfShape", "EyeLike", "Range", "BlackmanWindow", "HammingWindow", "HannWindow",
                 "MelWeightMatrix"]
RANDOM = ["RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"]

onnx_ops("generator", DETERMINISTIC + RANDOM)
