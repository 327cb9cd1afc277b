"""Recurrent layers (RNN, GRU, LSTM) with their ONNX gate layouts and directions."""

from compiler.ops.onnx_semantics import onnx_ops

onnx_ops("rnn", ["RNN", "GRU", "LSTM"])
