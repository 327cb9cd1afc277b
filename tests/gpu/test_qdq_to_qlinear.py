"""The qdq-to-qlinear pass: QDQ models run int8 on the gpu (QLinearConv / QLinearMatMul kernels)
within one quantization step of ONNX Runtime running the same QDQ model."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime

onnxruntime = pytest.importorskip("onnxruntime")
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: E402


def _initializer(name: str, shape, seed: int, scale: float = 0.2) -> TensorProto:
    values = np.random.default_rng(seed).standard_normal(shape) * scale
    return numpy_helper.from_array(values.astype(np.float32), name)


def _small_cnn():
    """Conv+Relu, strided Conv, depthwise Conv+Relu, Conv with Clip, GlobalAveragePool, Flatten, Gemm (bias)."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"], group=16, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c3"], ["r3"]),
             helper.make_node("Conv", ["r3", "w4"], ["c4"]),
             helper.make_node("Clip", ["c4", "lo", "hi"], ["r4"]),
             helper.make_node("GlobalAveragePool", ["r4"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    initializers = [_initializer("w1", (16, 3, 3, 3), 1), _initializer("b1", (16,), 2),
                    _initializer("w2", (16, 16, 3, 3), 3, 0.1), _initializer("b2", (16,), 4),
                    _initializer("w3", (16, 1, 3, 3), 5), _initializer("b3", (16,), 6),
                    _initializer("w4", (24, 16, 1, 1), 7), _initializer("wf", (10, 24), 8),
                    _initializer("bf", (10,), 9),
                    numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(1.5), "hi")]
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 17, 15])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


class _Reader(CalibrationDataReader):
    def __init__(self, count: int):
        self.samples = iter([{"x": np.random.default_rng(100 + i).standard_normal((1, 3, 17, 15)).astype(np.float32)}
                             for i in range(count)])

    def get_next(self):
        return next(self.samples, None)


@pytest.fixture(scope="module")
def qdq_cnn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qdq")
    (folder / "float.onnx").write_bytes(_small_cnn().SerializeToString())
    quantize_static(str(folder / "float.onnx"), str(folder / "qdq.onnx"), _Reader(8), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return str(folder / "qdq.onnx")


def _op_types(artifact) -> list[str]:
    return [step["op_type"] for step in artifact.manifest["launches"] if "op_type" in step]


def _output_step(model_path: str) -> float:
    """The scale of the QuantizeLinear feeding the graph output's DequantizeLinear: one quantization step."""
    import onnx

    model = onnx.load(model_path)
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    last = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    return float(initializers[last.input[1]])


def test_quantize_static_cnn_runs_int8_within_one_step_of_onnxruntime(qdq_cnn):
    artifact = compiler.compile(qdq_cnn, target="gpu")
    ops = _op_types(artifact)
    assert ops.count("QLinearConv") == 5 and "Conv" not in ops and "Gemm" not in ops, ops
    session = onnxruntime.InferenceSession(qdq_cnn, providers=["CPUExecutionProvider"])
    model = runtime.load(artifact)
    step = _output_step(qdq_cnn)
    for seed in range(4):
        x = np.random.default_rng(seed).standard_normal((1, 3, 17, 15)).astype(np.float32)
        want = session.run(None, {"x": x})[0]
        got = model.infer({"x": x})["y"]
        assert np.abs(got - want).max() <= step * 1.001, (np.abs(got - want).max(), step)


def test_disabled_by_name_keeps_the_float_qdq_graph(qdq_cnn):
    artifact = compiler.compile(qdq_cnn, target="gpu", disable=["qdq-to-qlinear"])
    ops = _op_types(artifact)
    assert "QLinearConv" not in ops and "QLinearMatMul" not in ops, ops
    x = np.random.default_rng(0).standard_normal((1, 3, 17, 15)).astype(np.float32)
    want = onnxruntime.InferenceSession(qdq_cnn, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(runtime.load(artifact).infer({"x": x})["y"], want, atol=_output_step(qdq_cnn) * 1.001)


def _qdq(name: str, scale: float, zero_point: int, dtype) -> tuple[list, dict]:
    """QuantizeLinear -> DequantizeLinear of `name` as `name`_dq: the nodes and their constants."""
    return [helper.make_node("QuantizeLinear", [name, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
            helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"])], \
        {f"{name}_s": np.float32(scale), f"{name}_z": np.array(zero_point, dtype)}


def test_matmul_gemm_and_activation_clamps_match_the_float_qdq_graph():
    """Batched MatMul (per-column weights), Gemm with alpha, transB=0 and a bias, Relu at a nonzero
    zero point (a Clip at the zero point) and Relu on int8: one step of onnx.reference running the
    QDQ graph, and each layer became a QLinear op."""
    rng = np.random.default_rng(0)
    constants = {"wm_q": rng.integers(-127, 128, (12, 7)).astype(np.int8),
                 "wm_s": rng.uniform(0.01, 0.02, 7).astype(np.float32), "wm_z": np.zeros(7, np.int8),
                 "wg_q": rng.integers(-127, 128, (12, 5)).astype(np.int8), "wg_s": np.float32(0.015),
                 "bg_q": rng.integers(-400, 400, 5).astype(np.int32), "bg_s": np.float32(0.05 * 0.015 * 0.5),
                 "flat": np.array([6, 12], np.int64)}
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["x2"])]
    for quantize_nodes, quantize_constants in (_qdq("x", 0.05, 128, np.uint8), _qdq("x2", 0.05, 128, np.uint8),
                                               _qdq("m", 0.1, 100, np.uint8), _qdq("g", 0.08, 3, np.int8)):
        nodes += quantize_nodes
        constants.update(quantize_constants)
    nodes += [helper.make_node("DequantizeLinear", ["wm_q", "wm_s", "wm_z"], ["wm"], axis=1),
              helper.make_node("MatMul", ["x_dq", "wm"], ["mm"]), helper.make_node("Relu", ["mm"], ["m"]),
              helper.make_node("DequantizeLinear", ["wg_q", "wg_s"], ["wg"]),
              helper.make_node("DequantizeLinear", ["bg_q", "bg_s"], ["bg"]),
              helper.make_node("Gemm", ["x2_dq", "wg", "bg"], ["gg"], alpha=0.5),
              helper.make_node("Relu", ["gg"], ["g"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 12])],
                              [helper.make_tensor_value_info("m_dq", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("g_dq", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    artifact = compiler.compile(model, target="gpu")
    ops = _op_types(artifact)
    assert "QLinearMatMul" in ops and "QLinearConv" in ops and "MatMul" not in ops and "Gemm" not in ops, ops
    assert ops.count("Clip") == 2, ops
    x = (np.random.default_rng(1).standard_normal((2, 3, 12)) * 3).astype(np.float32)
    want = runtime.load(compiler.compile(model, target="ref")).infer({"x": x})
    got = runtime.load(artifact).infer({"x": x})
    for name, step in (("m_dq", 0.1), ("g_dq", 0.08)):
        assert np.abs(got[name] - want[name]).max() <= step * 1.001, name
    assert got["m_dq"].min() >= 0 and got["g_dq"].min() >= 0
