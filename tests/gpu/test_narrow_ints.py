"""int4/uint4/int2/uint2 tensors on the gpu target (one element per byte, as ml_dtypes stores them):
Casts both ways, data movement and QuantizeLinear/DequantizeLinear, against onnx.reference."""

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

from tests.gpu.harness import nodes_model, run_gpu

NARROW = {"int4": (ml_dtypes.int4, TensorProto.INT4), "uint4": (ml_dtypes.uint4, TensorProto.UINT4),
          "int2": (ml_dtypes.int2, TensorProto.INT2), "uint2": (ml_dtypes.uint2, TensorProto.UINT2)}


@pytest.mark.parametrize("name", NARROW)
def test_casts_moves_and_quantization_match_onnx_reference(name):
    dtype, onnx_type = NARROW[name]
    info = ml_dtypes.iinfo(dtype)
    every = np.arange(int(info.min), int(info.max) + 1).astype(dtype).reshape(1, -1).repeat(3, axis=0)
    feeds = {"n": every, "i": np.arange(-5, 7, dtype=np.int32).reshape(3, 4),
             "f": np.linspace(-9.6, 9.6, 12, dtype=np.float32).reshape(3, 4)}
    constants = {"scale": np.float32(0.75), "zero": np.zeros((), dtype), "shape": np.array([-1, 2], np.int64)}
    nodes = [("Cast", ["n"], {"to": TensorProto.INT32}), ("Cast", ["n"], {"to": TensorProto.FLOAT}),
             ("Cast", ["i"], {"to": onnx_type}), ("Transpose", ["n"], {}), ("Reshape", ["n", "shape"], {}),
             ("QuantizeLinear", ["f", "scale", "zero"], {}), ("DequantizeLinear", ["n", "scale", "zero"], {})]
    model = nodes_model(nodes, feeds, constants, opset=25)
    expected = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))
    actual = run_gpu(model, feeds)
    for output, want in expected.items():
        assert actual[output].dtype == want.dtype and actual[output].shape == want.shape, output
        np.testing.assert_array_equal(actual[output].astype(np.float32), want.astype(np.float32), err_msg=output)
