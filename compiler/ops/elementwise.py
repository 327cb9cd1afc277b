"""Elementwise math, comparison, logic and activation ops (numpy-broadcasting)."""

from compiler.ops.onnx_semantics import onnx_ops

UNARY_MATH = ["Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Ceil", "Cos", "Cosh", "Erf", "Exp",
              "Floor", "IsInf", "IsNaN", "Log", "Neg", "Reciprocal", "Round", "Sign", "Sin", "Sinh", "Sqrt",
              "Tan", "Tanh", "Not", "BitwiseNot"]
BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Mod", "And", "Or", "Xor", "Equal", "Greater", "GreaterOrEqual",
          "Less", "LessOrEqual", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "PRelu"]
VARIADIC = ["Max", "Min", "Mean", "Sum", "Where"]
ACTIVATIONS = ["Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Softplus",
               "Softsign", "Mish", "Gelu", "Swish", "ThresholdedRelu", "Shrink", "Clip", "SwiGLU"]
CASTS = ["Cast", "CastLike", "BitCast", "Identity"]

onnx_ops("elementwise", UNARY_MATH + BINARY + VARIADIC + ACTIVATIONS + CASTS)
