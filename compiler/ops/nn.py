"""Neural-network layers: convolution, pooling, normalization, softmax, attention, losses."""

import numpy as np

from compiler.ir.graph import Node
from compiler.ops.onnx_semantics import infer_with_schema, onnx_ops, onnx_reference_kernel
from compiler.ops.registry import OpDef, register

CONVOLUTION = ["Conv", "ConvTranspose", "DeformConv", "Col2Im", "CausalConvWithState"]
LINEAR = ["Gemm", "MatMul", "Einsum", "Det"]
POOLING = ["AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalLpPool",
           "MaxRoiPool", "MaxUnpool", "RoiAlign"]
NORMALIZATION = ["InstanceNormalization", "LayerNormalization", "GroupNormalization",
                 "RMSNormalization", "MeanVarianceNormalization"]
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


# onnx.reference gets the next three wrong (LRN sums over the batch axis, LpNormalization p=1
# forgets the absolute value, GlobalMaxPool only reduces 4-D inputs correctly), so the oracle
# computes them itself, from the ONNX specification.

def lrn_window(size: int) -> tuple[int, int]:
    """(channels before, channels after) a channel in LRN's window of `size` channels, as ONNX defines it."""
    before = (size - 1) // 2
    return before, size - 1 - before


def _lrn_kernel(node: Node, input_types, present):
    """LRN: x / (bias + alpha/size * sum of x^2 over a window of `size` channels) ** beta."""
    size = node.attrs["size"]
    alpha, beta, bias = node.attrs.get("alpha", 1e-4), node.attrs.get("beta", 0.75), node.attrs.get("bias", 1.0)
    before, after = lrn_window(size)

    def kernel(inputs):
        x = inputs[0]
        squares = np.square(x)
        window = np.zeros_like(x)
        for channel in range(x.shape[1]):
            window[:, channel] = squares[:, max(0, channel - before): channel + after + 1].sum(axis=1)
        return [(x / (bias + alpha / size * window) ** beta).astype(x.dtype)]

    return kernel


def _lp_normalization_kernel(node: Node, input_types, present):
    """LpNormalization: x / ||x||_p along `axis` (p = 1 or 2); a zero norm gives 0."""
    axis, p = node.attrs.get("axis", -1), node.attrs.get("p", 2)

    def kernel(inputs):
        x = inputs[0]
        norm = np.sum(np.abs(x), axis=axis, keepdims=True) if p == 1 else \
            np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.where(norm == 0, 0, x / norm).astype(x.dtype)]

    return kernel


def _global_max_pool_kernel(node: Node, input_types, present):
    """GlobalMaxPool: the maximum over every spatial axis (2 and up), kept as size-1 dims."""
    def kernel(inputs):
        x = inputs[0]
        return [np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)]

    return kernel


register(OpDef("LRN", "", "nn", infer_with_schema, _lrn_kernel))
register(OpDef("LpNormalization", "", "nn", infer_with_schema, _lp_normalization_kernel))
register(OpDef("GlobalMaxPool", "", "nn", infer_with_schema, _global_max_pool_kernel))
