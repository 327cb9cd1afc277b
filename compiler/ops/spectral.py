"""Signal processing: DFT and STFT."""

from compiler.ops.onnx_semantics import onnx_ops

onnx_ops("signal", ["DFT", "STFT"])
