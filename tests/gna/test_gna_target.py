"""The gna target end to end: ONNX models compiled to quantized streams and run by the bit-exact
executor, compared with onnxruntime (fp32) by SNR; calibration, the report, what it rejects, the CLI."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import runtime
from compiler.cli import main
from compiler.calibration_data import CalibrationError
from compiler.codegen.gna.report import format_report, sqnr_db
from compiler.driver import UnsupportedByTargetError, compile
from frontends.onnx.backend import get_backend
from tests.gna.models import mlp, tdnn


def _inputs(model: onnx.ModelProto, count: int, seed: int = 1) -> np.ndarray:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def _snr(model: onnx.ModelProto, count: int = 40, **options) -> float:
    session = ort.InferenceSession(model.SerializeToString())
    loaded = runtime.load(compile(model, "gna", **options))
    xs = _inputs(model, count)
    name = model.graph.input[0].name
    reference = np.stack([session.run(None, {name: x})[0] for x in xs])
    got = np.stack([loaded.infer({name: x})[model.graph.output[0].name] for x in xs])
    return sqnr_db(reference, got)


@pytest.mark.parametrize("build", [mlp, tdnn], ids=["mlp", "tdnn"])
def test_speech_models_meet_the_snr_targets(build):
    model = build()
    assert _snr(model) >= 40.0  # measured near 60 dB
    assert _snr(model, gna_weights="int8") >= 25.0  # measured near 37 dB


def test_more_than_eight_frames_run_as_several_affine_layers():
    model = mlp(frames=12, sizes=(20, 36, 10), activations=("Tanh",))
    artifact = compile(model, "gna")
    layers = json.loads(artifact.files["report.json"])["layers"]
    assert [layer["name"] for layer in layers if layer["op"] == "AFFINE"][:2] == ["Gemm_0[0:8]", "Gemm_0[8:12]"]
    assert _snr(model) >= 40.0


def _model(nodes, x_shape, y_shape, weights=None, opset=17):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in (weights or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_diagonal_layers_standalone_activations_and_a_transposed_output():
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Mul", ["x", "s"], ["a"]), helper.make_node("Add", ["a", "t"], ["b"]),
             helper.make_node("Tanh", ["b"], ["c"]), helper.make_node("Softsign", ["c"], ["d"]),
             helper.make_node("Transpose", ["d"], ["y"], perm=[1, 0])]
    model = _model(nodes, [3, 16], [16, 3], {"s": rng.normal(size=(1, 16)), "t": rng.normal(size=(3, 1))})
    assert _snr(model) >= 35.0


def test_calibration_from_npz_and_npy_directory(tmp_path):
    model = mlp(sizes=(24, 16, 8), activations=("Relu",))
    samples = _inputs(model, 8, seed=5)
    np.savez(tmp_path / "cal.npz", x=samples)
    (tmp_path / "dir").mkdir()
    np.save(tmp_path / "dir" / "x.npy", samples)
    streams = [compile(model, "gna", calibration=str(path)).files["model.gna"]
               for path in (tmp_path / "cal.npz", tmp_path / "dir")]
    assert streams[0] == streams[1] != compile(model, "gna").files["model.gna"]
    np.savez(tmp_path / "bad.npz", x=samples[:, :, :5])
    with pytest.raises(CalibrationError, match=r"input 'x' has shape \[8, 1, 5\]"):
        compile(model, "gna", calibration=str(tmp_path / "bad.npz"))


def test_compiles_are_deterministic_and_the_report_lists_every_layer():
    model = tdnn()
    first, second = compile(model, "gna"), compile(model, "gna")
    assert first.files == second.files
    report = json.loads(first.files["report.json"])
    ops = [layer["op"] for layer in report["layers"]]
    assert ops == ["TRANSPOSE", "CONV1D", "CONV1D", "CONV1D", "AFFINE", "AFFINE"]
    sigmoid = report["layers"][2]["pwl"]
    assert sigmoid["function"] == "Sigmoid" and sigmoid["segments"] >= 65 and sigmoid["max_error"] <= 0.01
    assert all(layer["saturated"] == 0 for layer in report["layers"])
    assert report["outputs"]["y"] > 40.0
    table = format_report(report)
    assert "Conv_2" in table and "Sigmoid" in table and "output SQNR" in table


def test_unsupported_lists_every_node_and_why():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["p"]),
             helper.make_node("Add", ["p", "h"], ["q"]), helper.make_node("Conv", ["q4", "k"], ["c"]),
             helper.make_node("Reshape", ["q", "shape"], ["q4"]), helper.make_node("Flatten", ["c"], ["y"])]
    weights = {"w": rng.normal(size=(16, 64)), "k": rng.normal(size=(4, 1, 3, 3)), "shape": [1, 1, 8, 8]}
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(a, np.float32 if n != "shape" else np.int64), n)
                               for n, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedByTargetError) as caught:
        compile(model, "gna")
    reasons = {u.op: u.reason for u in caught.value.unsupported}
    assert set(reasons) == {"Softmax", "Add", "Conv"}
    assert "two run-time tensors" in reasons["Add"] and "CONV2D" in reasons["Conv"]


def test_cli_compiles_with_calibration_and_int8_weights(tmp_path, capsys):
    model = mlp(sizes=(24, 16, 8), activations=("Sigmoid",))
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=_inputs(model, 4))
    assert main(["compile", str(tmp_path / "m.onnx"), "-t", "gna", "--calibration", str(tmp_path / "cal.npz"),
                 "--gna-weights", "int8", "-o", str(tmp_path / "m.kiln")]) == 0
    assert "Sigmoid" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "m.kiln" / "manifest.json").read_text())
    assert manifest["target"] == "gna" and manifest["options"]["gna_weights"] == "int8"
    x = _inputs(model, 1)[0]
    y = runtime.load(tmp_path / "m.kiln").infer({"x": x})["y"]
    assert sqnr_db(ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0], y) > 20.0


def test_onnx_backend_runs_gna():
    model = mlp(sizes=(16, 8), activations=())
    x = _inputs(model, 1)[0]
    (y,) = get_backend("gna").run_model(model, [x])
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, reference, rtol=0, atol=1e-3 * np.abs(reference).max())
