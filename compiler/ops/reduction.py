"""Reductions over axes, arg-reductions and scans along an axis."""

from compiler.ops.onnx_semantics import onnx_ops

REDUCE = ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
          "ReduceProd", "ReduceSum", "ReduceSumSquare"]
ARG = ["ArgMax", "ArgMin", "TopK"]
CUMULATIVE = ["CumSum", "CumProd"]

onnx_ops("reduction", REDUCE + ARG + CUMULATIVE)
