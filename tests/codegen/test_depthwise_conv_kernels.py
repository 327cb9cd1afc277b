"""cpu depthwise Conv kernel (kernels/depthwise_conv.py) against ONNX Runtime (float64: the ref target),
bit-identical at 1 and 2 threads.

Widths are odd on purpose (not multiples of any vector width); the cases cover several row blocks per
plane, strided rows and columns, asymmetric pads, dilation and the kernels left to the direct form, and
forced plans run both of the kernel's forms (register blocks along output rows, and vectors over
flattened rows) whatever the cost model picks on this machine.
"""

import numpy as np
import onnxruntime
import pytest
from onnx import helper, numpy_helper

from compiler.codegen.llvm.kernels import depthwise_conv
from compiler.codegen.llvm.kernels.conv_geometry import conv_geometry
from compiler.codegen.llvm.kernels.depthwise_conv import specialised
from compiler.codegen.llvm.kernels.gemm_microkernel import vector_lanes
from compiler.driver import optimize
from tests.codegen.kernel_harness import TOLERANCE, assert_cpu_matches_ref, random, run_cpu

# (input shape, kernel, attributes); every conv has group == channels
DEPTHWISE = [
    ((1, 8, 13, 13), (3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 16, 20, 37), (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),  # batch 2, several vectors per row
    ((1, 5, 17, 19), (3, 3), {"strides": [2, 2], "pads": [0, 1, 2, 0]}),  # asymmetric pads
    ((1, 6, 15, 23), (5, 5), {"pads": [2, 2, 2, 2]}),
    ((1, 4, 16, 40), (3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((1, 3, 19, 23), (3, 3), {"strides": [2, 2], "dilations": [2, 2], "pads": [2, 1, 2, 2]}),  # one phase read
    ((1, 7, 7, 7), (3, 3), {"pads": [1, 1, 1, 1]}),  # a 7 x 7 output, as in the last stage of MobileNetV2
    ((1, 3, 14, 14), (3, 3), {"strides": [2, 2], "pads": [1, 1, 0, 0]}),
    ((1, 4, 11, 29), (2, 4), {"strides": [1, 3], "dilations": [2, 1], "pads": [1, 2, 0, 1]}),
    ((1, 3, 10, 15), (3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((2, 3, 150, 33), (3, 3), {"pads": [1, 1, 1, 1]}),  # several row blocks per plane
    ((1, 2, 6, 300), (3, 3), {"strides": [1, 2], "pads": [1, 1, 1, 1]}),  # wide rows
    ((1, 3, 12, 40), (3, 3), {"strides": [2, 2]}),  # unpadded: input columns past the last output's reach
    ((1, 4, 20, 20), (7, 7), {"pads": [3, 3, 3, 3]}),  # the most taps the kernel unrolls
    ((1, 2, 9, 9), (1, 1), {"strides": [3, 3], "pads": [2, 2, 2, 2]}),  # outputs of padding only
    ((2, 6, 50), (5,), {"strides": [2], "pads": [2, 1]}),  # 1-D: a 2-D conv of height 1
]
DIRECT = [  # depthwise convs left to the direct form
    ((1, 3, 10, 10), (9, 9), {"pads": [4, 4, 4, 4]}),  # more taps than the kernel unrolls
    ((1, 2, 4, 9000), (3, 3), {"pads": [1, 1, 1, 1]}),  # rows wider than it stages
]
ACTIVATIONS = [None, "Relu", "Clip"]


def _model(x_shape, kernel, attrs, activation, residual_shape=None, dtype=np.float32):
    """Conv(x, w, bias) [+ r] [-> activation] with constant weights; the graph input is x (and r)."""
    channels = x_shape[1]
    constants = {"w": random((channels, 1, *kernel), dtype, seed=1), "bias": random((channels,), dtype, seed=2)}
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["conv"], group=channels, **attrs)]
    inputs = [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), x_shape)]
    if residual_shape is not None:
        nodes.append(helper.make_node("Add", ["conv", "r"], ["sum"]))
        inputs.append(helper.make_tensor_value_info("r", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                                    residual_shape))
    last = nodes[-1].output[0]
    if activation == "Relu":
        nodes.append(helper.make_node("Relu", [last], ["y"]))
    elif activation == "Clip":
        constants.update(low=np.array(0, dtype), high=np.array(0.75, dtype))
        nodes.append(helper.make_node("Clip", [last, "low", "high"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(nodes, "depthwise", inputs, [helper.make_value_info("y", helper.TypeProto())],
                              initializer=[numpy_helper.from_array(v, k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _check(model, feeds: dict) -> None:
    """cpu (1 and 2 threads) matches ONNX Runtime."""
    (expected,) = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)
    actual = run_cpu(model, feeds)["y"]
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, **TOLERANCE)


def _geometry(model):
    graph = optimize(model, "cpu")
    (conv,) = [node for node in graph.nodes() if node.op_type in ("Conv", "FusedConv")]
    return conv_geometry(conv, *graph.input_types(conv)[:2])


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=["none", "relu", "clip"])
@pytest.mark.parametrize("x_shape, kernel, attrs", DEPTHWISE + DIRECT)
def test_depthwise_conv(x_shape, kernel, attrs, activation):
    model = _model(x_shape, kernel, attrs, activation)
    assert specialised(_geometry(model)) == ((x_shape, kernel, attrs) in DEPTHWISE)
    _check(model, {"x": random(x_shape)})


# forced plans (output rows per item, rows per register block, vectors per block row, flat), whatever the
# cost model would choose on this machine: row blocks that end past the plane, partial blocks, both forms
FORCED_PLANS = [(3, 2, 1, False), (4, 3, 2, False), (5, 1, 3, True), (2, 1, 1, True)]


@pytest.mark.parametrize("rows, block_rows, vectors, flat", FORCED_PLANS)
@pytest.mark.parametrize("x_shape, kernel, attrs", [case for case in DEPTHWISE if max(case[2].get("strides", [1])) > 1])
def test_every_form(monkeypatch, x_shape, kernel, attrs, rows, block_rows, vectors, flat):
    monkeypatch.setattr(depthwise_conv, "depthwise_plan", lambda g: depthwise_conv.DepthwisePlan(
        g, rows, block_rows, vectors, vector_lanes(g.dtype), flat))
    _check(_model(x_shape, kernel, attrs, "Clip"), {"x": random(x_shape)})


@pytest.mark.parametrize("residual_shape", [(2, 6, 9, 11), (1, 1, 1, 11), (1, 6, 9, 1)],
                         ids=["dense", "columns", "rows"])
def test_depthwise_conv_with_residual_and_relu(residual_shape):
    """A residual Add fused into the store pass, dense or broadcast along the output's rows or columns."""
    x_shape, attrs = (2, 6, 17, 21), {"strides": [2, 2], "pads": [1, 1, 1, 1]}
    model = _model(x_shape, (3, 3), attrs, "Relu", residual_shape)
    _check(model, {"x": random(x_shape), "r": random(residual_shape, seed=3)})


def test_depthwise_conv_float64():
    """Half the lanes per vector; ONNX Runtime has no float64 Conv, so the ref target is the oracle."""
    x_shape = (1, 5, 12, 19)
    model = _model(x_shape, (3, 3), {"strides": [2, 1], "pads": [1, 0, 1, 2]}, "Clip", dtype=np.float64)
    assert specialised(_geometry(model))
    assert_cpu_matches_ref(model, {"x": random(x_shape, np.float64)})
