"""The quantizer's QDQ graph against ONNX Runtime's quantize_static, and its numerics in onnxruntime."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import runtime
from compiler.calibration_data import CalibrationError
from compiler.driver import compile
from compiler.ir.graph import Graph, Value
from compiler.ops.interpreter import Interpreter
from compiler.ops.onnx_export import model_to_proto
from compiler.passes.quantize_static import QuantizationError, QuantizeStatic, plan_quantization
from compiler.quantization.driver import QuantizationTargetError, quantize_model
from compiler.quantization.params import activation_params, quantize_linear_weights
from compiler.quantization.ranges import RangeError
from frontends.onnx.importer import import_model
from tests.quantization.models import attention, conv_relu_matmul, model, samples, small_cnn


def _quantized(onnx_model, tmp_path, **options) -> Graph:
    """Our QDQ graph of `onnx_model`, calibrated (minmax) on its seeded samples."""
    path = tmp_path / "calibration.npz"
    np.savez(path, **samples(onnx_model))
    graph, _ = quantize_model(import_model(onnx_model), "ref", {"calibration": str(path), **options})
    return graph


def _ort_quantized(onnx_model, tmp_path) -> Graph:
    """ORT's quantize_static QDQ model (per_channel, QUInt8/QInt8, minmax) on the same samples, imported."""
    source, target = tmp_path / "float.onnx", tmp_path / "ort_int8.onnx"
    onnx.save(onnx_model, str(source))
    stacks = samples(onnx_model)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{name: stack[i] for name, stack in stacks.items()} for i in range(8)])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return import_model(str(target))


def _producer(graph: Graph, value: Value):
    return graph.node(value.node)


def _constant(graph: Graph, value: Value) -> np.ndarray:
    return np.asarray(graph.constant_value(value))


def _linear_parameters(graph: Graph, name: str) -> dict:
    """Scales, zero points and integer constants around the quantized node `name`."""
    node = graph.node(name)
    inputs = graph.input_values(node)
    found = {}
    for label, value in zip(("x", "w", "b"), inputs):
        dequantize = _producer(graph, value)
        assert dequantize.op_type == "DequantizeLinear", f"{name} input {label} is read through {dequantize.op_type}"
        data, scale, zero_point = graph.input_values(dequantize)
        found[f"{label}_scale"], found[f"{label}_zero_point"] = _constant(graph, scale), _constant(graph, zero_point)
        if label != "x":
            found[label] = _constant(graph, data)
            found[f"{label}_axis"] = dequantize.attrs.get("axis", 1)
    for reader, _ in graph.uses(Value(name)):
        if graph.node(reader).op_type == "QuantizeLinear":
            found["y_scale"], found["y_zero_point"] = (_constant(graph, v) for v in graph.input_values(reader)[1:])
    return found


def _operators(graph: Graph) -> Counter:
    return Counter(node.op_type for node in graph.nodes() if not (node.is_input or node.is_constant))


def test_graph_matches_onnxruntime_quantize_static(tmp_path):
    """The same graph, but for the graph output: ORT quantizes it, ours stays float (see the pass)."""
    model = conv_relu_matmul()
    ours, theirs = _quantized(model, tmp_path), _ort_quantized(model, tmp_path)
    assert _operators(theirs) == Counter({"QuantizeLinear": 3, "DequantizeLinear": 6, "Conv": 1, "MatMul": 1})
    assert _operators(ours) == _operators(theirs) - Counter({"QuantizeLinear": 1, "DequantizeLinear": 1})
    assert ours.outputs[0][1] == Value("matmul") and "Relu" not in _operators(ours)  # the Relu is absorbed
    for name in ("conv", "matmul"):
        mine, ort_ = _linear_parameters(ours, name), _linear_parameters(theirs, name)
        assert mine.keys() == ort_.keys() - ({"y_scale", "y_zero_point"} if name == "matmul" else set())
        for key in mine:
            if key.endswith("scale"):
                np.testing.assert_allclose(mine[key], ort_[key], rtol=1e-5, err_msg=f"{name} {key}")
            elif key.endswith("axis"):
                assert mine[key] == ort_[key], f"{name} {key}"
            else:
                assert mine[key].dtype == ort_[key].dtype, f"{name} {key}"
                assert np.abs(mine[key].astype(np.int64) - ort_[key]).max() <= 1, f"{name} {key}"


def _ort_run(graph: Graph, feeds: dict) -> list:
    """`graph` exported and run by onnxruntime. Outputs are renamed: the quantized output's float value keeps
    the output's name ("y"), which the exporter's Identity to the output name would define twice."""
    exported = graph.copy()
    exported.outputs = [(f"{name}.out", value) for name, value in graph.outputs]
    session = ort.InferenceSession(model_to_proto(exported).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("build", [conv_relu_matmul, small_cnn, attention])
def test_qdq_graph_runs_alike_in_onnxruntime_and_kiln(build, tmp_path):
    """ORT runs our QDQ model with its int8 kernels; the ref interpreter and the cpu target run the same
    graph. An intermediate value may round to the neighbouring uint8 step where ORT requantizes in
    float32, so results agree to 1 % of the output's magnitude, not bit for bit."""
    model = build()
    graph = _quantized(model, tmp_path)
    feeds = {name: stack[3] for name, stack in samples(model, seed=1).items()}
    expected = _ort_run(graph, feeds)[0]
    tolerance = 0.01 * float(np.abs(expected).max())
    reference = Interpreter(graph).run(feeds)[0]
    native = runtime.load(compile(graph, "cpu")).infer(feeds)[graph.outputs[0][0]]
    np.testing.assert_allclose(reference, expected, atol=tolerance)
    np.testing.assert_allclose(native, expected, atol=tolerance)


def test_small_cnn_wraps_pools_add_and_concat(tmp_path):
    graph = _quantized(small_cnn(), tmp_path)
    operators = _operators(graph)
    assert "BatchNormalization" not in operators and "Clip" not in operators and "Relu" not in operators
    for name in ("maxpool", "residual", "avgpool", "concat", "gap"):
        node = graph.node(name)
        for value in graph.input_values(node):
            if graph.constant_value(value) is None:
                assert _producer(graph, value).op_type == "DequantizeLinear", f"{name} reads a float value"
        readers = [graph.node(reader).op_type for reader, _ in graph.uses(Value(name))]
        # quantized where a quantized op reads it; gap's output goes to Flatten, a float op, and stays float
        assert readers == (["Flatten"] if name == "gap" else ["QuantizeLinear"]), name
    flatten = graph.node("flatten")
    assert [graph.node(r).op_type for r, _ in graph.uses(Value(flatten.name))] == ["QuantizeLinear"]  # fc reads it
    pool = graph.node("maxpool")
    before = graph.input_values(_producer(graph, graph.input_values(pool)[0]))
    (after, _), = graph.uses(Value("maxpool"))
    for i in (1, 2):  # MaxPool keeps its input's scale and zero point
        assert _constant(graph, before[i]) == _constant(graph, graph.input_values(after)[i])
    fc = _linear_parameters(graph, "fc")
    assert fc["w_axis"] == 0 and fc["w"].shape == (10, 12) and fc["b"].dtype == np.int32
    np.testing.assert_allclose(fc["b_scale"], fc["x_scale"] * fc["w_scale"], rtol=1e-6)


def test_matmul_of_two_activations_stays_float(tmp_path):
    """x reaches scores through the pair the key MatMul reads it by; the key it multiplies stays float."""
    graph = _quantized(attention(), tmp_path)
    scores = graph.node("scores")
    assert [_producer(graph, v).op_type for v in graph.input_values(scores)] == ["DequantizeLinear", "Transpose"]
    assert _producer(graph, graph.input_values(graph.node("transpose"))[0]).op_type == "MatMul"
    assert [_producer(graph, v).op_type for v in graph.input_values(graph.node("softmax"))] == ["MatMul"]  # float
    assert _producer(graph, graph.input_values(graph.node("mix"))[0]).op_type == "DequantizeLinear"
    mix = _linear_parameters(graph, "mix")
    assert mix["w_axis"] == 1 and mix["w"].dtype == np.int8 and mix["w_scale"].shape == (6,)


def test_ignore_keeps_a_node_float(tmp_path):
    model = conv_relu_matmul()
    graph = _quantized(model, tmp_path, ignore=["matmul"])
    matmul = graph.node("matmul")
    data, weights = graph.input_values(matmul)
    np.testing.assert_array_equal(graph.constant_value(weights), onnx.numpy_helper.to_array(model.graph.initializer[2]))
    # no quantized op reads conv's output any more: it stays float, and so the Relu stays
    assert _producer(graph, data).op_type == "Relu"
    assert _producer(graph, graph.input_values("relu")[0]).op_type == "Conv"
    conv = _linear_parameters(graph, "conv")
    assert conv["w"].dtype == np.int8 and "y_scale" not in conv


def test_unknown_ignore_name_lists_close_names(tmp_path):
    with pytest.raises(QuantizationError, match=r"'matmull': close names \['matmul'\]"):
        _quantized(conv_relu_matmul(), tmp_path, ignore=["matmull"])


def test_zero_and_tiny_weight_channels_and_zero_ranges_do_not_divide_by_zero():
    weights = np.ones((3, 4), np.float32)
    weights[0] = 0.0
    weights[1] = 1e-39  # subnormal in float32
    linear = quantize_linear_weights(weights, 0, np.float32(1.0), np.array([0.0, 1e-39, 2.0], np.float32))
    assert np.all(np.isfinite(linear.scale)) and np.all(linear.scale > 0) and np.all(linear.bias_scale > 0)
    assert not linear.weights[0].any()
    for low, high in ((0.0, 0.0), (-1e-42, 1e-42)):  # no width, or one below float32's smallest normal / 255
        params = activation_params(low, high)
        assert params.scale == 1.0 and params.zero_point == 0
    assert activation_params(3.0, 3.0) == activation_params(0.0, 3.0)  # the range always holds 0


def test_zero_range_activation_in_a_graph(tmp_path):
    model = conv_relu_matmul(W=np.zeros((8, 3, 3, 3), np.float32), B=np.zeros(8, np.float32))
    graph = _quantized(model, tmp_path)
    out = Interpreter(graph).run({"x": samples(model)["x"][0]})[0]
    assert np.array_equal(out, np.zeros_like(out))  # conv's output is 0 everywhere: scale 1, zero point 0


def test_a_bias_too_large_for_int32_raises_the_weight_scale():
    weights = np.full((2, 3), 1e-3, np.float32)
    bias = np.array([1e9, 0.5], np.float32)
    linear = quantize_linear_weights(weights, 0, np.float32(1e-3), bias)
    assert np.all(np.abs(linear.bias.astype(np.int64)) < 2 ** 31)
    np.testing.assert_allclose(linear.bias * linear.bias_scale.astype(np.float64), bias, rtol=1e-6)
    assert linear.scale[0] > 1e-3 / 127 and linear.scale[1] == np.float32(1e-3 / 127)
    np.testing.assert_allclose(linear.bias_scale, np.float32(1e-3) * linear.scale, rtol=1e-7)


def test_pass_refuses_missing_ranges():
    graph = import_model(conv_relu_matmul())
    with pytest.raises(QuantizationError, match="no calibration range for value"):
        QuantizeStatic({"x": (0.0, 1.0)})(graph)


def test_plan_measures_the_absorbed_activation():
    graph = import_model(conv_relu_matmul())
    plan = plan_quantization(graph)
    assert [graph.value_name(v) for v in plan.measured()] == ["x", "r"]  # y: a graph output, stays float
    assert plan.removed == {"relu": Value("conv")}


def test_calibration_errors_name_what_is_wrong(tmp_path):
    float_model = conv_relu_matmul()
    np.savez(tmp_path / "other.npz", image=np.zeros((2, 1, 3, 8, 8), np.float32))
    with pytest.raises(CalibrationError, match=r"no samples for input\(s\) \['x'\]"):
        compile(float_model, "cpu", precision="int8", calibration=str(tmp_path / "other.npz"))
    np.savez(tmp_path / "shape.npz", x=np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(CalibrationError, match=r"has shape \[2, 3, 4, 4\]; the model takes \[1, 3, 8, 8\]"):
        compile(float_model, "cpu", precision="int8", calibration=str(tmp_path / "shape.npz"))
    np.savez(tmp_path / "inf.npz", x=np.full((2, 1, 3, 8, 8), np.inf, np.float32))
    with pytest.raises(RangeError, match=r"value 'x' .* reaches inf"):
        compile(float_model, "cpu", precision="int8", calibration=str(tmp_path / "inf.npz"))
    with pytest.raises(QuantizationTargetError, match="not 'gna'"):
        compile(float_model, "gna", precision="int8")
    with pytest.raises(RangeError, match="unknown calibration method 'kl': use one of minmax, percentile"):
        compile(float_model, "ref", precision="int8", calibration_method="kl")
    with pytest.raises(RangeError, match="calibration percentile 150"):
        compile(float_model, "ref", precision="int8", calibration_method="percentile", calibration_percentile=150)


def test_symbolic_input_dims_need_static_shapes():
    weights = {"w": np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)}
    batched = model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], {"x": ["N", 4]}, {"y": ["N", 2]},
                    weights)
    with pytest.raises(CalibrationError, match=r"input\(s\) \{'x': \('N', 4\)\} have symbolic dims"):
        compile(batched, "ref", precision="int8")
    assert runtime.load(compile(batched, "ref", precision="int8", shapes={"x": [3, 4]})).inputs[0].shape == (3, 4)


def test_the_gpu_target_runs_the_qdq_graph(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))  # OpenCL binaries: not the user's cache
    model = small_cnn()
    np.savez(tmp_path / "calibration.npz", **samples(model, count=6))
    options = {"precision": "int8", "calibration": str(tmp_path / "calibration.npz")}
    x = samples(model, seed=5)["x"][0]
    reference = runtime.load(compile(model, "ref", **options)).infer({"x": x})["y"]
    gpu = runtime.load(compile(model, "gpu", **options)).infer({"x": x})["y"]
    np.testing.assert_allclose(gpu, reference, rtol=1e-5, atol=1e-5)


def test_maxpool_of_an_old_opset_takes_8_bit_values(tmp_path):
    """MaxPool before opset 12 has no uint8 form; a quantized one is moved to version 12 (ORT upgrades the
    whole model to opset 13), so the cpu target can move the pair across it."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
             helper.make_node("MaxPool", ["c1"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "w2"], ["y"], name="conv2")]
    old = model(nodes, {"x": [1, 2, 6, 6]}, {"y": [1, 3, 3, 3]},
                {"w1": rng.standard_normal((4, 2, 1, 1)).astype(np.float32),
                 "w2": rng.standard_normal((3, 4, 1, 1)).astype(np.float32)}, opset=11)
    graph = _quantized(old, tmp_path)
    assert graph.node("pool").version == 12 and graph.node("conv1").version == 11
    x = samples(old, seed=2)["x"][0]
    native = runtime.load(compile(graph, "cpu")).infer({"x": x})["y"]
    np.testing.assert_allclose(native, Interpreter(graph).run({"x": x})[0], rtol=1e-4, atol=1e-4)
