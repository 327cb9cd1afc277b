"""`kiln check --target gna` and `--fallback cpu`: what only a trial lowering finds is listed before emit, and
what the GNA cannot run goes to the cpu target in one split ("hetero") artifact, compared with onnxruntime."""

import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import runtime
from compiler.cli import main
from compiler.codegen.gna.report import sqnr_db
from compiler.driver import compile
from tests.gna.models import lstm_kws, mlp


def _model(nodes, x_shape, y_shape, weights):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _check(tmp_path, capsys, model) -> tuple[int, list]:
    onnx.save(model, tmp_path / "m.onnx")
    code = main(["check", str(tmp_path / "m.onnx"), "--target", "gna", "--json"])
    return code, json.loads(capsys.readouterr().out)["targets"]["gna"]


def test_check_lists_what_only_the_isa_limits_reject(tmp_path, capsys):
    rng = np.random.default_rng(0)
    wide = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [1, 65536], [1, 8],
                  {"w": rng.normal(size=(65536, 8))})
    code, problems = _check(tmp_path, capsys, wide)
    assert code != 0 and [p["op"] for p in problems] == ["MatMul"]
    assert "inputs is 65536, above the limit of 65528" in problems[0]["reason"]
    dynamic = _model([helper.make_node("Relu", ["x"], ["y"])], ["N", 16], ["N", 16], {})
    code, problems = _check(tmp_path, capsys, dynamic)
    assert code != 0 and "dynamic dims" in problems[0]["reason"]


def test_softmax_head_runs_on_the_cpu_with_fallback(tmp_path, capsys):
    model = lstm_kws(hidden=(32, 32), head="Softmax")
    code, problems = _check(tmp_path, capsys, model)
    assert code != 0 and [p["op"] for p in problems] == ["Softmax"]
    artifact = compile(model, "gna", fallback="cpu")
    parts = artifact.manifest["parts"]
    assert [(p["target"], p["outputs"]) for p in parts] == [("gna", ["logits"]), ("cpu", ["y"])]
    xs = np.random.default_rng(4).standard_normal((4, 49, 1, 40)).astype(np.float32)
    session, loaded = ort.InferenceSession(model.SerializeToString()), runtime.load(artifact)
    reference = np.stack([session.run(None, {"x": x})[0] for x in xs])
    got = np.stack([loaded.infer({"x": x})["y"] for x in xs])
    assert sqnr_db(reference, got) >= 40.0  # measured near 60 dB: the gna part's quantization error


def test_an_unsupported_node_in_the_middle_splits_into_three_parts(tmp_path):
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"]), helper.make_node("Softmax", ["h"], ["p"]),
             helper.make_node("MatMul", ["p", "w1"], ["q"]), helper.make_node("Tanh", ["q"], ["y"])]
    model = _model(nodes, [2, 24], [2, 16], {"w0": rng.normal(size=(24, 32)), "w1": rng.normal(size=(32, 16))})
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["compile", str(tmp_path / "m.onnx"), "-t", "gna", "--fallback", "cpu", "--quiet",
                 "-o", str(tmp_path / "m.kiln")]) == 0
    loaded = runtime.load(tmp_path / "m.kiln")
    manifest = json.loads((tmp_path / "m.kiln" / "manifest.json").read_text())
    assert [p["target"] for p in manifest["parts"]] == ["gna", "cpu", "gna"]
    x = rng.standard_normal((2, 24)).astype(np.float32)
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert sqnr_db(reference, loaded.infer({"x": x})["y"]) >= 35.0


def test_fallback_keeps_a_model_the_gna_runs_whole_as_one_stream():
    artifact = compile(mlp(sizes=(24, 16, 8), activations=("Relu",)), "gna", fallback="cpu")
    assert artifact.manifest["target"] == "gna"
