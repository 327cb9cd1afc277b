"""fuse-quantized-add: residual additions of QDQ graphs become kiln::QuantizedAdd, bit-identical to the unfused
graph, on an onnxruntime quantize_static model (checked against onnxruntime too)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

import compiler
import runtime
from compiler.driver import optimize
from tests.passes.test_fuse_quantized_linear import _model, _output_scale, _quantize_static, _samples, _weights


def _residual_block() -> tuple[onnx.ModelProto, dict]:
    """y = Relu(conv2(Relu(conv1(x))) + x), then a 1x1 conv so the sum's quantization is used."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "x"], ["s"]), helper.make_node("Relu", ["s"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3"], ["y"])]
    initializers = {"w1": _weights(8, 8, 3, 3), "b1": _weights(8), "w2": _weights(8, 8, 3, 3), "b2": _weights(8),
                    "w3": _weights(4, 8, 1, 1)}
    inputs = {"x": [1, 8, 10, 10]}
    return _model(nodes, inputs, "y", initializers), inputs


def test_residual_add_is_one_int8_pass(tmp_path):
    model, inputs = _residual_block()
    qdq = _quantize_static(model, inputs, tmp_path)
    graph = optimize(qdq, target="cpu")
    ops = [node.qualified_op for node in graph.nodes()]
    assert ops.count("kiln::QuantizedAdd") == 1 and "Add" not in ops and "kiln::FusedElementwise" not in ops
    fused = runtime.load(compiler.compile(qdq, target="cpu"))
    unfused = runtime.load(compiler.compile(qdq, target="cpu", disable=["fuse-quantized-add"]))
    session = ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"])
    lsb = _output_scale(qdq)
    for feeds in _samples(inputs, 3, 5):
        got = fused.infer(feeds)["y"]
        np.testing.assert_array_equal(got, unfused.infer(feeds)["y"])
        assert np.abs(got - session.run(None, feeds)[0]).max() <= lsb * 1.001
