"""gpu BitCast beside numpy's view: float <-> int of each width, half floats, and a refused pair."""

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto

import compiler
from compiler.driver import UnsupportedByTargetError
from tests.gpu.harness import nodes_model, random, run_gpu


def test_bitcast_matches_numpy_view():
    x = random((3, 5))
    feeds = {"f32": x, "i64": np.arange(-7, 8, dtype=np.int64).reshape(3, 5) * 987654321987,
             "f16": x.astype(np.float16), "u8": np.arange(250, 265).astype(np.uint8).reshape(3, 5)}
    nodes = [("BitCast", ["f32"], {"to": TensorProto.INT32}), ("BitCast", ["i64"], {"to": TensorProto.UINT64}),
             ("BitCast", ["f16"], {"to": TensorProto.BFLOAT16}), ("BitCast", ["f16"], {"to": TensorProto.INT16}),
             ("BitCast", ["u8"], {"to": TensorProto.INT8})]
    actual = run_gpu(nodes_model(nodes, feeds, opset=26), feeds)
    expected = [x.view(np.int32), feeds["i64"].view(np.uint64), feeds["f16"].view(ml_dtypes.bfloat16),
                feeds["f16"].view(np.int16), feeds["u8"].view(np.int8)]
    for number, want in enumerate(expected):
        got = actual[f"BitCast_{number}"]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_bitcast_to_bool_is_refused():
    feeds = {"u8": np.zeros((4,), np.uint8)}
    with pytest.raises(UnsupportedByTargetError, match="BitCast from uint8 to bool"):
        compiler.compile(nodes_model([("BitCast", ["u8"], {"to": TensorProto.BOOL})], feeds, opset=26), target="gpu")
