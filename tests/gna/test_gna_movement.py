"""Slice, Split and Concat on the gna target (COPY into 64-byte-aligned slots), compared with onnxruntime."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.driver import UnsupportedByTargetError, compile
from tests.gna.test_gna_target import _snr


def _model(nodes, x_shape, y_shape, weights, int_names=()):
    """A one-input float model; the initializers named in `int_names` are int64 (shapes, slice bounds)."""
    initializers = [numpy_helper.from_array(np.asarray(a, np.int64 if n in int_names else np.float32), n)
                    for n, a in weights.items()]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _dense(rng, fan_in, fan_out):
    return rng.normal(0.0, 1.0 / np.sqrt(fan_in), (fan_in, fan_out))


def test_spliced_context_slices_and_concat_on_the_last_axis():
    """Slices of the input at unaligned offsets, a Tanh and a Relu branch (different scales: a rescale), then
    one concatenation read by an affine layer."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Slice", ["x", "s0", "e0", "a1"], ["left"]),
             helper.make_node("Slice", ["x", "s1", "e1", "a1", "st"], ["odd"]),
             helper.make_node("MatMul", ["left", "w0"], ["m0"]), helper.make_node("Tanh", ["m0"], ["t0"]),
             helper.make_node("MatMul", ["odd", "w1"], ["m1"]), helper.make_node("Relu", ["m1"], ["t1"]),
             helper.make_node("Concat", ["t0", "t1", "left"], ["cat"], axis=-1),
             helper.make_node("MatMul", ["cat", "w2"], ["y"])]
    weights = {"s0": [3], "e0": [27], "a1": [1], "s1": [-1], "e1": [-41], "st": [-2],
               "w0": _dense(rng, 24, 12), "w1": _dense(rng, 20, 20), "w2": _dense(rng, 12 + 20 + 24, 10)}
    model = _model(nodes, [3, 40], [3, 10], weights, int_names=("s0", "e0", "a1", "s1", "e1", "st"))
    layers = json.loads(compile(model, "gna").files["report.json"])["layers"]
    assert [layer["op"] for layer in layers if layer["name"].startswith("Concat")] == \
        ["DIAGONAL", "COPY", "COPY", "COPY"]
    assert _snr(model) >= 40.0


@pytest.mark.parametrize("axis", [0, 1])
def test_split_then_concat_on_an_outer_axis(axis):
    """Split into unequal parts, a layer on one of them, and the parts stacked again along another axis."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Split", ["x", "sizes"], ["p", "q"], axis=axis),
             helper.make_node("Sigmoid", ["p"], ["sp"]),
             helper.make_node("Concat", ["q", "sp", "q"], ["cat"], axis=axis),
             helper.make_node("Reshape", ["cat", "flat"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    x_shape = [5, 2, 24]
    sizes = [3, 2] if axis == 0 else [1, 1]
    cat_shape = list(x_shape)
    cat_shape[axis] = sizes[1] * 2 + sizes[0]
    weights = {"sizes": sizes, "flat": [cat_shape[0], cat_shape[1] * 24], "w": _dense(rng, cat_shape[1] * 24, 8)}
    model = _model(nodes, x_shape, [cat_shape[0], 8], weights, int_names=("sizes", "flat"))
    assert _snr(model) >= 40.0


def test_concat_of_a_constant_is_refused_with_the_reason():
    nodes = [helper.make_node("Concat", ["x", "c"], ["cat"], axis=1), helper.make_node("Relu", ["cat"], ["y"])]
    model = _model(nodes, [1, 16], [1, 24], {"c": np.ones((1, 8))})
    with pytest.raises(UnsupportedByTargetError, match="constant part"):
        compile(model, "gna")

