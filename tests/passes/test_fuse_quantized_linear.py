"""fuse-quantized-linear and sink-dequantize on QDQ models: onnxruntime's quantize_static output (a small CNN,
an MLP, an attention block) and hand-written QDQ graphs (Relu/Clip before the QuantizeLinear, float
output), compiled for the cpu and compared with onnxruntime running the same QDQ model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import compiler
import runtime
from compiler.driver import optimize

RNG = np.random.default_rng(0)


def _model(nodes, inputs: dict, output: str, initializers: dict, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(value), name) for name, value in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _weights(*shape, scale=0.2) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


class _Samples(CalibrationDataReader):
    def __init__(self, samples: list[dict]):
        self.samples = iter(samples)

    def get_next(self):
        return next(self.samples, None)


def _samples(inputs: dict, count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(np.float32) for name, shape in inputs.items()}
            for _ in range(count)]


def _quantize_static(model: onnx.ModelProto, inputs: dict, tmp_path,
                     activations: QuantType = QuantType.QUInt8) -> onnx.ModelProto:
    """onnxruntime's QDQ model (8-bit activations, per-channel int8 weights) calibrated on 8 seeded samples."""
    source, target = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, source)
    quantize_static(str(source), str(target), _Samples(_samples(inputs, 8, 1)), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=activations, weight_type=QuantType.QInt8)
    return onnx.load(target)


def _output_scale(model: onnx.ModelProto) -> float:
    """The scale of the DequantizeLinear giving the graph output."""
    output = model.graph.output[0].name
    node = next(n for n in model.graph.node if output in n.output)
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return float(initializers[node.input[1]])


def _compare(model: onnx.ModelProto, inputs: dict, lsb: float, disable=(), most_lsb: float = 1.0) -> None:
    """cpu vs onnxruntime on the same QDQ model: within `most_lsb` LSB of the output quantization, almost all
    within half of one (the kernels sum exactly and requantize in float32, onnxruntime rounds its own way)."""
    artifact = compiler.compile(model, target="cpu", disable=disable)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for feeds in _samples(inputs, 3, 2):
        got = next(iter(runtime.load(artifact).infer(feeds).values()))
        want = session.run(None, feeds)[0]
        difference = np.abs(got - want)
        assert difference.max() <= lsb * most_lsb * 1.001, (difference.max(), lsb)
        assert np.mean(difference > lsb / 2) < (0.02 if most_lsb == 1 else 0.5)


def _op_types(model, **options) -> list[str]:
    graph = optimize(model, target="cpu", **options)
    return [node.qualified_op for node in graph.topological_order() if not (node.is_input or node.is_constant)]


def _cnn() -> tuple[onnx.ModelProto, dict]:
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], transB=1)]
    initializers = {"w1": _weights(8, 3, 3, 3), "b1": _weights(8, scale=0.1), "w2": _weights(16, 8, 3, 3),
                    "b2": _weights(16, scale=0.1), "wg": _weights(10, 256, scale=0.1), "bg": _weights(10)}
    inputs = {"x": [1, 3, 16, 16]}
    return _model(nodes, inputs, "y", initializers), inputs


def _mlp() -> tuple[onnx.ModelProto, dict]:
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["y"])]
    initializers = {"w1": _weights(30, 45), "b1": _weights(45), "w2": _weights(45, 7), "b2": _weights(7)}
    inputs = {"x": [4, 30]}
    return _model(nodes, inputs, "y", initializers), inputs


def _attention() -> tuple[onnx.ModelProto, dict]:
    tokens, width = 12, 32
    nodes = [helper.make_node("MatMul", ["x", f"w{p}"], [p]) for p in "qkv"]
    nodes += [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
              helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["ss"]),
              helper.make_node("Softmax", ["ss"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"]),
              helper.make_node("MatMul", ["o", "wo"], ["y"])]
    initializers = {**{f"w{p}": _weights(width, width) for p in "qkvo"},
                    "scale": np.array(1 / np.sqrt(width), np.float32)}
    inputs = {"x": [1, tokens, width]}
    return _model(nodes, inputs, "y", initializers), inputs


@pytest.mark.parametrize("activations", [QuantType.QUInt8, QuantType.QInt8])
def test_cnn_from_quantize_static(activations, tmp_path):
    model, inputs = _cnn()
    qdq = _quantize_static(model, inputs, tmp_path, activations)
    ops = _op_types(qdq)
    assert ops.count("kiln::QuantizedConv") == 2 and ops.count("kiln::QuantizedMatMul") == 1
    assert "Conv" not in ops and "kiln::FusedConv" not in ops
    graph = optimize(qdq, target="cpu")
    pool = next(node for node in graph.nodes() if node.op_type == "MaxPool")
    dtype = "uint8" if activations == QuantType.QUInt8 else "int8"
    assert graph.input_types(pool)[0].dtype == dtype  # moved below its DequantizeLinear, Q(DQ) cancelled
    assert ops.count("QuantizeLinear") == 1 and ops.count("DequantizeLinear") == 1  # the graph's input and output
    _compare(qdq, inputs, _output_scale(qdq))


def test_fusion_is_off_by_name(tmp_path):
    model, inputs = _cnn()
    qdq = _quantize_static(model, inputs, tmp_path)
    ops = _op_types(qdq, disable=["fuse-quantized-linear", "sink-dequantize"])
    assert not any(op.startswith("kiln::Quantized") for op in ops)
    _compare(qdq, inputs, _output_scale(qdq), disable=["fuse-quantized-linear", "sink-dequantize"])


@pytest.mark.parametrize("build, most_lsb, adds", [(_mlp, 1, 2), (_attention, 4, 0)])
def test_matmul_models_from_quantize_static(build, most_lsb, adds, tmp_path):
    """The attention block's activation x activation MatMuls and Softmax stay float QDQ, which onnxruntime
    computes with its own int8 kernels and rounding (kiln's fused and unfused builds agree bit for bit with
    the ref target there): up to a few LSB from onnxruntime, within one of the ref target."""
    model, inputs = build()
    qdq = _quantize_static(model, inputs, tmp_path)
    ops = _op_types(qdq)
    weights = sum(1 for n in model.graph.node if n.op_type == "MatMul" and n.input[1].startswith("w"))
    assert ops.count("kiln::QuantizedMatMul") == weights
    assert ops.count("kiln::QuantizedAdd") == adds  # the MLP's bias additions (fuse-quantized-add)
    _compare(qdq, inputs, _output_scale(qdq), most_lsb=most_lsb)
    cpu, ref = (runtime.load(compiler.compile(qdq, target=target)) for target in ("cpu", "ref"))
    for feeds in _samples(inputs, 2, 4):
        got, want = (next(iter(executable.infer(feeds).values())) for executable in (cpu, ref))
        assert np.abs(got - want).max() <= _output_scale(qdq) * 1.001


# ---- hand-written QDQ graphs (as a quantizer that keeps the activation writes them) ----

def _qdq_conv(tail: list, output: str, clip: tuple | None = None, extra: dict | None = None) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(w int8 per channel), DQ(b int32)) -> `tail` (`extra`: its initializers)."""
    weights = _weights(6, 4, 3, 3)
    w_scale = (np.abs(weights).reshape(6, -1).max(axis=1) / 127).astype(np.float32)
    x_scale = np.float32(4 / 255)
    bias = _weights(6)
    b_scale = (x_scale * w_scale).astype(np.float32)
    initializers = {
        "x_scale": x_scale, "x_zero": np.uint8(128),
        "w_q": np.rint(weights / w_scale.reshape(-1, 1, 1, 1)).astype(np.int8),
        "w_scale": w_scale, "w_zero": np.zeros(6, np.int8), "b_q": np.rint(bias / b_scale).astype(np.int32),
        "b_scale": b_scale, "b_zero": np.zeros(6, np.int32), "y_scale": np.float32(0.05), "y_zero": np.uint8(100),
    }
    if clip:
        initializers.update(low=np.float32(clip[0]), high=np.float32(clip[1]))
    initializers.update(extra or {})
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
             helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zero"], ["b"], axis=0),
             helper.make_node("Conv", ["xd", "w", "b"], ["c"], pads=[1, 1, 1, 1]), *tail]
    return _model(nodes, {"x": [1, 4, 9, 9]}, output, initializers)


def _quantized_tail(activation: list) -> list:
    source = activation[-1].output[0] if activation else "c"
    return [*activation, helper.make_node("QuantizeLinear", [source, "y_scale", "y_zero"], ["yq"]),
            helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zero"], ["y"])]


@pytest.mark.parametrize("activation, clip", [
    ([], None),
    ([helper.make_node("Relu", ["c"], ["r"])], None),
    ([helper.make_node("Clip", ["c", "low", "high"], ["r"])], (-0.5, 2.0)),
])
def test_activation_becomes_the_clamp(activation, clip):
    model = _qdq_conv(_quantized_tail(activation), "y", clip)
    assert _op_types(model).count("kiln::QuantizedConv") == 1
    assert not {"Relu", "Clip", "Conv"} & set(_op_types(model))
    _compare(model, {"x": [1, 4, 9, 9]}, 0.05)


def test_float_output_without_quantize():
    model = _qdq_conv([helper.make_node("Relu", ["c"], ["y"])], "y")
    graph = optimize(model, target="cpu")
    fused = next(node for node in graph.nodes() if node.op_type == "QuantizedConv")
    assert fused.attrs["output_dtype"] == "float32" and fused.attrs["low"] == 0.0
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    artifact = compiler.compile(model, target="cpu")
    for feeds in _samples({"x": [1, 4, 9, 9]}, 3, 3):
        want = session.run(None, feeds)[0]
        np.testing.assert_allclose(runtime.load(artifact).infer(feeds)["y"], want, rtol=1e-5, atol=1e-5)


def _qdq_matmul(tail: list, output: str) -> onnx.ModelProto:
    """x[3,5,20] -> Q -> DQ -> MatMul(DQ(w int8 per column)) "m" -> Add(m, bias [1,1,12]) "a" -> `tail`."""
    weights = _weights(20, 12)
    w_scale = (np.abs(weights).max(axis=0) / 127).astype(np.float32)
    initializers = {"x_scale": np.float32(6 / 255), "x_zero": np.uint8(128),
                    "w_q": np.rint(weights / w_scale).astype(np.int8), "w_scale": w_scale,
                    "w_zero": np.zeros(12, np.int8), "bias": _weights(1, 1, 12, scale=0.5),
                    "y_scale": np.float32(0.02), "y_zero": np.uint8(0)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=1),
             helper.make_node("MatMul", ["xd", "w"], ["m"]), helper.make_node("Add", ["m", "bias"], ["a"]), *tail]
    return _model(nodes, {"x": [3, 5, 20]}, output, initializers)


@pytest.mark.parametrize("quantized_output", [False, True])
def test_bias_add_after_matmul_joins_the_epilogue(quantized_output):
    """MatMul then Add(bias), as exporters write a dense layer and our quantizer leaves it: one int8 node,
    its bias rounded to the accumulator's units (s_x * s_w, as a quantized bias is)."""
    tail = [helper.make_node("Relu", ["a"], ["r"]), helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zero"],
            ["yq"]), helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zero"], ["y"])] if quantized_output else []
    model = _qdq_matmul(tail, "y" if quantized_output else "a")
    graph = optimize(model, target="cpu")
    fused = next(node for node in graph.nodes() if node.op_type == "QuantizedMatMul")
    assert fused.attrs["output_dtype"] == ("uint8" if quantized_output else "float32")
    assert not {"Add", "MatMul", "Relu"} & set(_op_types(model))
    if quantized_output:
        _compare(model, {"x": [3, 5, 20]}, 0.02)
        return
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    artifact = runtime.load(compiler.compile(model, target="cpu"))
    for feeds in _samples({"x": [3, 5, 20]}, 3, 3):
        np.testing.assert_allclose(artifact.infer(feeds)["a"], session.run(None, feeds)[0], rtol=1e-5, atol=2e-4)


def test_bias_add_after_conv_sums_with_its_bias():
    tail = [helper.make_node("Add", ["more_bias", "c"], ["a"]), helper.make_node("Relu", ["a"], ["r"])]
    model = _qdq_conv(_quantized_tail(tail), "y", extra={"more_bias": _weights(6, 1, 1)})
    assert _op_types(model).count("kiln::QuantizedConv") == 1 and "Add" not in _op_types(model)
    _compare(model, {"x": [1, 4, 9, 9]}, 0.05)


def test_an_add_that_broadcasts_beyond_the_channels_stays_float():
    tail = [helper.make_node("Add", ["c", "rows"], ["a"]), helper.make_node("Relu", ["a"], ["r"])]
    model = _qdq_conv(_quantized_tail(tail), "y", extra={"rows": _weights(6, 9, 1)})
    fused = next(node for node in optimize(model, target="cpu").nodes() if node.op_type == "QuantizedConv")
    assert fused.attrs["output_dtype"] == "float32" and len(fused.attrs["fused_nodes"]) == 1
    _compare(model, {"x": [1, 4, 9, 9]}, 0.05)


@pytest.mark.parametrize("op_type", ["QLinearConv", "QLinearMatMul"])
def test_prequantized_ops_are_exact_unless_asked(op_type):
    """QLinearConv/QLinearMatMul keep their exact kernels (equal to onnxruntime here); fast_qlinear=True
    gives the int8 kernels, within 1 LSB."""
    rng = np.random.default_rng(7)
    if op_type == "QLinearConv":
        shape, weights, attrs = [1, 8, 9, 9], rng.integers(-127, 128, (12, 8, 3, 3)), {"pads": [1, 1, 1, 1]}
        w_scale = (rng.random(12) * 0.01 + 0.002).astype(np.float32)
    else:
        shape, weights, attrs = [5, 40], rng.integers(-127, 128, (40, 24)), {}
        w_scale = np.float32(0.004)
    initializers = {"x_scale": np.float32(0.02), "x_zero": np.uint8(120), "w": weights.astype(np.int8),
                    "w_scale": w_scale, "w_zero": np.zeros(np.shape(w_scale), np.int8), "y_scale": np.float32(0.3),
                    "y_zero": np.uint8(90)}
    nodes = [helper.make_node(op_type, ["x", *initializers], ["y"], **attrs)]
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert op_type in _op_types(model)
    assert "kiln::Quantized" + op_type.removeprefix("QLinear") in _op_types(model, fast_qlinear=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    exact, fast = (runtime.load(compiler.compile(model, target="cpu", fast_qlinear=flag)) for flag in (False, True))
    x = rng.integers(0, 256, shape).astype(np.uint8)
    want = session.run(None, {"x": x})[0].astype(int)
    np.testing.assert_array_equal(exact.infer({"x": x})["y"], want)
    assert np.abs(fast.infer({"x": x})["y"].astype(int) - want).max() <= 1


@pytest.mark.parametrize("op_type, x_dtype", [("ConvInteger", np.uint8), ("MatMulInteger", np.int8)])
def test_integer_ops_with_constant_weights_are_exact(op_type, x_dtype):
    """ConvInteger / MatMulInteger with constant int8 weights run on the int8 kernels, bit-exact."""
    rng = np.random.default_rng(9)
    if op_type == "ConvInteger":
        shape, weights, attrs = [2, 6, 8, 7], rng.integers(-128, 128, (10, 3, 3, 3)), {"pads": [1, 0, 1, 2], "group": 2}
    else:
        shape, weights, attrs = [3, 4, 30], rng.integers(-128, 128, (30, 21)), {}
    initializers = {"w": weights.astype(np.int8), "x_zero": np.array(5, x_dtype)}
    nodes = [helper.make_node(op_type, ["x", "w", "x_zero"], ["y"], **attrs)]
    element = TensorProto.UINT8 if x_dtype == np.uint8 else TensorProto.INT8
    graph = helper.make_graph(nodes, "i", [helper.make_tensor_value_info("x", element, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert "kiln::Quantized" + op_type.removesuffix("Integer") in _op_types(model)
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max + 1, shape).astype(x_dtype)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = runtime.load(compiler.compile(model, target="cpu")).infer({"x": x})["y"]
    np.testing.assert_array_equal(got, want)
