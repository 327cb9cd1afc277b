"""cpu Softmax, LogSoftmax, BatchNormalization, LayerNormalization, InstanceNormalization and LRN
kernels against the ref target, at 1 and 2 threads."""

import numpy as np
import pytest

from compiler.codegen.llvm.kernels.gemm_microkernel import vector_lanes
from tests.codegen.kernel_harness import assert_cpu_matches_ref, node_model, random

LANES = vector_lanes("float32")


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape, axis", [((4, 37), -1), ((3, 5, 7), 1), ((2, 3, 300), 0), ((6,), 0), ((2, 1, 9), 1)])
def test_softmax_family(op, shape, axis):
    x = random(shape) * 4
    assert_cpu_matches_ref(node_model(op, {"x": x}, attrs={"axis": axis}), {"x": x})


def test_softmax_of_large_values_does_not_overflow():
    x = (random((3, 8), np.float64) + 1) * 1000
    result = assert_cpu_matches_ref(node_model("Softmax", {"x": x}), {"x": x})["y"]
    np.testing.assert_allclose(result.sum(axis=-1), 1.0)


def _channel_parameters(channels, dtype, count):
    return [random((channels,), dtype, seed=index + 1) for index in range(count)]


@pytest.mark.parametrize("shape, dtype", [((2, 3, 5, 4), np.float32), ((3, 4), np.float32),
                                          ((2, 5, 1, 1), np.float64), ((1, 3, 7), np.float32)])
def test_batch_normalization(shape, dtype):
    x = random(shape, dtype)
    scale, bias, mean = _channel_parameters(shape[1], dtype, 3)
    var = np.abs(random((shape[1],), dtype, seed=9)) + 0.1
    constants = {"scale": scale, "bias": bias, "mean": mean, "var": var}
    model = node_model("BatchNormalization", {"x": x}, constants, {"epsilon": 1e-3})
    assert_cpu_matches_ref(model, {"x": x})


@pytest.mark.parametrize("shape, axis, parameter_shape, with_bias", [
    ((4, 16), -1, (16,), True), ((2, 3, 5), 1, (3, 5), True), ((2, 3, 5), 1, (1, 3, 5), False),
    ((3, 4, 2), -2, (1,), True), ((5, 7), 0, (5, 7), True)])
def test_layer_normalization(shape, axis, parameter_shape, with_bias):
    x = random(shape)
    constants = {"scale": random(parameter_shape, seed=1), "bias": random(parameter_shape, seed=2)}
    if not with_bias:
        del constants["bias"]
    model = node_model("LayerNormalization", {"x": x}, constants, {"axis": axis, "epsilon": 1e-4})
    assert_cpu_matches_ref(model, {"x": x})


def test_layer_normalization_statistics_outputs_come_from_the_function_body():
    """The kernel does not write Mean/InvStdDev; the node is then expanded into its ONNX function."""
    x = random((2, 8))
    model = node_model("LayerNormalization", {"x": x}, {"scale": random((8,))}, outputs=("y", "mean", "inv_std"))
    assert_cpu_matches_ref(model, {"x": x})


@pytest.mark.parametrize("shape, dtype", [((2, 3, 5, 6), np.float32), ((1, 4, 9), np.float64), ((2, 3, 1, 1), np.float32)])
def test_instance_normalization(shape, dtype):
    x = random(shape, dtype) * 3 + 1
    scale, bias = _channel_parameters(shape[1], dtype, 2)
    model = node_model("InstanceNormalization", {"x": x}, {"scale": scale, "bias": bias}, {"epsilon": 1e-3})
    assert_cpu_matches_ref(model, {"x": x})


@pytest.mark.parametrize("beta", [0.7, 0.75])  # (0.75: square roots, not exp and log)
@pytest.mark.parametrize("shape, size, dtype", [((2, 5, 3, 4), 3, np.float32), ((1, 4, 2, 3), 2, np.float64),
                                                ((3, 7, 1, 5), 5, np.float32), ((1, 9, 13, 17), 5, np.float32)])
def test_lrn(shape, size, dtype, beta):
    x = random(shape, dtype)
    model = node_model("LRN", {"x": x}, attrs={"size": size, "alpha": 0.01, "beta": beta, "bias": 1.5})
    assert_cpu_matches_ref(model, {"x": x})


@pytest.mark.parametrize("size, beta", [(5, 0.75), (1, 0.75), (4, 0.6), (2 * LANES + 1, 0.75)])
def test_lrn_between_convs_runs_blocked(size, beta):
    """kiln::BlockedLRN: the window reaches into the blocks on either side (zeros past the first and last)."""
    from onnx import helper, numpy_helper

    from compiler.driver import optimize

    channels = 3 * LANES
    weights = [numpy_helper.from_array(random(shape, seed=seed) * 0.2, name) for name, shape, seed in
               (("wa", (channels, LANES, 5, 5), 1), ("wb", (LANES, channels, 1, 1), 2))]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], pads=[2, 2, 2, 2]),
             helper.make_node("LRN", ["a"], ["l"], size=size, alpha=0.3, beta=beta, bias=1.0),
             helper.make_node("Conv", ["l", "wb"], ["y"])]
    graph = helper.make_graph(nodes, "lrn", [helper.make_tensor_value_info("x", 1, [1, LANES, 12, 11])],
                              [helper.make_tensor_value_info("y", 1, None)], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert "BlockedLRN" in [node.op_type for node in optimize(model, "cpu").nodes()]
    x = random((1, LANES, 12, 11))
    assert_cpu_matches_ref(model, {"x": x})
