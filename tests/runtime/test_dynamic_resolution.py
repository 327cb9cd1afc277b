"""One artifact for images of any size within bounds (shapes={"x": ["1..4", 3, "9..24", "9..24"]}): height
and width are dynamic extents (compiler/dynamic_extent.py) whose valid sizes convolutions and pools
shrink; a classifier and a dense (per-pixel) head match ONNX Runtime at every (batch, height, width)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from compiler.dynamic_extent import DynamicExtentError

RNG = np.random.default_rng(0)
SIZES = [(2, 24, 24), (1, 9, 9), (3, 13, 20), (4, 17, 10), (1, 24, 11)]


def _cnn(dense: bool = False):
    """Conv 3x3 + BN + Relu, a stride-2 conv, a depthwise conv with a residual Add, MaxPool 3x3 s2 (ceil
    mode); then GlobalAveragePool + Gemm + Softmax, or (dense) a 1x1 conv per pixel."""
    f = lambda *shape: (RNG.standard_normal(shape) * 0.3).astype(np.float32)  # noqa: E731
    weights = {"w1": f(8, 3, 3, 3), "b1": f(8), "gamma": f(8) + 1, "beta": f(8), "mean": f(8),
               "var": np.abs(f(8)) + 0.5, "w2": f(8, 8, 3, 3), "dw": f(8, 1, 3, 3), "fc": f(10, 8), "fc_b": f(10),
               "head": f(5, 8, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["a1"]),
             helper.make_node("Conv", ["a1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["c2", "dw"], ["d2"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Add", ["d2", "c2"], ["s2"]),
             helper.make_node("MaxPool", ["s2"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)]
    if dense:
        nodes.append(helper.make_node("Conv", ["p2", "head"], ["y"]))
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, "h", "w"])
    else:
        nodes += [helper.make_node("GlobalAveragePool", ["p2"], ["g"]), helper.make_node("Flatten", ["g"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["logits"], transB=1),
                  helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           ["N", 3, "H", "W"])], [out],
                              initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _check(model, target: str) -> None:
    executable = runtime.load(compiler.compile(model, target=target, shapes={"x": ["1..4", 3, "9..24", "9..24"]}))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch, height, width in SIZES:
        x = RNG.standard_normal((batch, 3, height, width)).astype(np.float32)
        expected = session.run(None, {"x": x})[0]
        got = executable.infer({"x": x})["y"]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dense", [False, True], ids=["classifier", "dense"])
def test_a_cnn_matches_onnxruntime_at_every_batch_and_size(dense):
    _check(_cnn(dense), "cpu")


def test_the_signature_names_the_dims_and_their_bounds():
    model = runtime.load(compiler.compile(_cnn(dense=True), target="cpu", shapes={"x": [1, 3, "9..24", "9..24"]}))
    assert model.inputs[0].shape == (1, 3, "H", "W") and model.inputs[0].bounds[2:] == ((9, 24), (9, 24))
    assert model.outputs[0].shape == (1, 5, "H'", "W'") and model.outputs[0].bounds[2:] == ((2, 6), (2, 6))


def test_padding_that_depends_on_the_size_is_refused():
    model = _cnn()
    model.graph.node[3].attribute.append(helper.make_attribute("auto_pad", "SAME_UPPER"))
    del model.graph.node[3].attribute[0]  # pads
    with pytest.raises(DynamicExtentError, match="auto_pad SAME_UPPER with stride 2"):
        compiler.compile(model, target="cpu", shapes={"x": [1, 3, "9..24", "9..24"]})


def test_a_lower_bound_leaving_no_positions_is_refused():
    with pytest.raises(DynamicExtentError, match="MaxPool.*no positions along axis 2; raise the lower bound"):
        compiler.compile(_cnn(), target="cpu", shapes={"x": [1, 3, "2..24", "9..24"]})


def test_mobilenet_v2_at_two_sizes_within_its_bounds():
    """Inverted residual blocks: the residual Add meets paths whose windows differ but give the same valid
    sizes (extent_types.Extent.same)."""
    from bench.models import mobilenet_v2

    model = mobilenet_v2(classes=10).model
    for axis, name in ((0, "N"), (2, "H"), (3, "W")):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    name = model.graph.input[0].name
    executable = runtime.load(compiler.compile(model, target="cpu", shapes={name: [1, 3, "64..96", "64..96"]}))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for height, width in ((96, 96), (65, 80)):
        x = RNG.standard_normal((1, 3, height, width)).astype(np.float32)
        np.testing.assert_allclose(next(iter(executable.infer({name: x}).values())), session.run(None, {name: x})[0],
                                   rtol=1e-3, atol=1e-4)


def test_wide_images_skip_the_column_tiles_past_the_width():
    """Rows wider than a direct convolution's column tile (256) take two tiles; a narrower call skips the
    second one (extent_marks.conv_blocks), and all sizes match ONNX Runtime."""
    model = _cnn(dense=True)
    executable = runtime.load(compiler.compile(model, target="cpu", shapes={"x": [1, 3, "9..12", "200..300"]}))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for height, width in ((12, 300), (9, 200), (10, 257)):
        x = RNG.standard_normal((1, 3, height, width)).astype(np.float32)
        np.testing.assert_allclose(executable.infer({"x": x})["y"], session.run(None, {"x": x})[0],
                                   rtol=1e-4, atol=1e-5)
