"""Neural-network layers: convolution, pooling, normalization, softmax, attention, losses."""

import numpy as np

from compiler.ir.graph import Node
from compiler.ops.onnx_semantics import infer_with_schema, onnx_ops, onnx_reference_kernel
from compiler.ops.registry import OpDef, register

CONVOLUTION = ["Conv", "ConvTranspose", "DeformConv", "Col2Im", "CausalConvWithState"]
LINEAR = ["Gemm", "MatMul", "Einsum", "Det"]
POOLING = ["AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
           "MaxRoiPool", "MaxUnpool", "RoiAlign"]
NORMALIZATION = ["InstanceNormalization", "LayerNormalization", "GroupNormalization",
                 "RMSNormalization", "LRN", "LpNormalization", "MeanVarianceNormalization"]
SOFTMAX = ["Softmax", "LogSoftmax", "Hardmax"]
ATTENTION = ["Attention", "RotaryEmbedding", "LinearAttention"]
LOSSES = ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"]
REGULARIZATION = ["Dropout"]

onnx_ops("nn", CONVOLUTION + LINEAR + POOLING + NORMALIZATION + SOFTMAX + ATTENTION + LOSSES + REGULARIZATION)
onnx_ops("nn", ["FlexAttention"], domain="ai.onnx.preview")


def _batch_normalization_kernel(node: Node, input_types, present):
    """Inference BatchNormalization (one output) from the running statistics.

    onnx.reference's BatchNormalization-9 switches to batch statistics whenever `momentum`
    has a value, and it always has one (the schema default), so inference is done here;
    training mode (several outputs) keeps onnx.reference's semantics.
    """
    if len(node.outputs) > 1:
        return onnx_reference_kernel(node, input_types, present)
    epsilon = node.attrs.get("epsilon", 1e-5)

    def kernel(inputs):
        x, scale, bias, mean, var = inputs[:5]
        shape = (-1,) + (1,) * max(0, x.ndim - 2)
        dtype = x.dtype
        inv_std = (1 / np.sqrt(var.astype(np.float32) + np.float32(epsilon))).reshape(shape)
        y = (x - mean.reshape(shape).astype(dtype)) * (scale.reshape(shape) * inv_std).astype(dtype) \
            + bias.reshape(shape).astype(dtype)
        return [y.astype(dtype)]

    return kernel


register(OpDef("BatchNormalization", "", "nn", infer_with_schema, _batch_normalization_kernel))
