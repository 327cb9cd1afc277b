"""Neural-network layers: convolution, pooling, normalization, softmax, attention, losses."""

from compiler.ops.onnx_semantics import onnx_ops

CONVOLUTION = ["Conv", "ConvTranspose", "DeformConv", "Col2Im", "CausalConvWithState"]
LINEAR = ["Gemm", "MatMul", "Einsum", "Det"]
POOLING = ["AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
           "MaxRoiPool", "MaxUnpool", "RoiAlign"]
NORMALIZATION = ["BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
                 "RMSNormalization", "LRN", "LpNormalization", "MeanVarianceNormalization"]
SOFTMAX = ["Softmax", "LogSoftmax", "Hardmax"]
ATTENTION = ["Attention", "RotaryEmbedding", "LinearAttention"]
LOSSES = ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"]
REGULARIZATION = ["Dropout"]

onnx_ops("nn", CONVOLUTION + LINEAR + POOLING + NORMALIZATION + SOFTMAX + ATTENTION + LOSSES + REGULARIZATION)
onnx_ops("nn", ["FlexAttention"], domain="ai.onnx.preview")
