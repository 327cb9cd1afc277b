"""RNN, GRU and LSTM on the gna target (compiler/codegen/gna/recurrent.py, gru.py): compiled streams run by the bit-exact
executor against onnxruntime (fp32), and the recurrent nodes `kiln check` rejects with a reason."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import runtime
from compiler.codegen.gna.report import sqnr_db
from compiler.driver import UnsupportedByTargetError, compile
from tests.gna.models import _recurrent_weights, lstm_kws


def _run_both(model: onnx.ModelProto, xs: np.ndarray, **options) -> tuple[dict, dict]:
    """Outputs by name, stacked over `xs`: onnxruntime's and the gna artifact's."""
    session = ort.InferenceSession(model.SerializeToString())
    loaded = runtime.load(compile(model, "gna", **options))
    names = [o.name for o in model.graph.output]
    reference = [dict(zip(names, session.run(None, {"x": x}))) for x in xs]
    got = [loaded.infer({"x": x}) for x in xs]
    return ({n: np.stack([r[n] for r in reference]) for n in names},
            {n: np.stack([g[n] for g in got]) for n in names})


def _seeded(shape, count: int = 6, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


@pytest.mark.parametrize("weights, floor", [("int16", 45.0), ("int8", 30.0)])
def test_lstm_keyword_spotter_meets_the_snr_targets(weights, floor):
    model = lstm_kws()
    reference, got = _run_both(model, _seeded((49, 1, 40)), gna_weights=weights)
    assert sqnr_db(reference["y"], got["y"]) >= floor  # measured 60 dB (int16), 47 dB (int8)
    assert np.mean(reference["y"].argmax(-1) == got["y"].argmax(-1)) == 1.0


def _recurrent_model(op: str, gates: int, steps: int, features: int, hidden: int, outputs: list, seed: int = 3,
                     **attrs) -> onnx.ModelProto:
    w, r, b = _recurrent_weights(np.random.default_rng(seed), gates, features, hidden)
    shapes = {"Y": [steps, 1, 1, hidden], "Y_h": [1, 1, hidden], "Y_c": [1, 1, hidden]}
    node = helper.make_node(op, ["x", "W", "R", "B"], outputs, hidden_size=hidden, **attrs)
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, features])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in outputs if n],
                              [numpy_helper.from_array(a.astype(np.float32) * 2.0, n)
                               for n, a in (("W", w), ("R", r), ("B", b))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_lstm_sequence_last_state_and_cell_outputs():
    model = _recurrent_model("LSTM", 4, 12, 20, 24, ["Y", "Y_h", "Y_c"])
    reference, got = _run_both(model, _seeded((12, 1, 20)))
    for name in ("Y", "Y_h", "Y_c"):
        assert got[name].shape == reference[name].shape
        assert sqnr_db(reference[name], got[name]) >= 45.0, name  # measured above 55 dB
    np.testing.assert_array_equal(got["Y"][:, -1], got["Y_h"])


def test_lstm_steps_are_seven_layers_with_their_pwl_designs_reported():
    artifact = compile(_recurrent_model("LSTM", 4, 3, 8, 8, ["", "Y_h"]), "gna")
    layers = json.loads(artifact.files["report.json"])["layers"]
    step = ["AFFINE", "AFFINE", "AFFINE", "AFFINE", "DIAGONAL", "AFFINE", "AFFINE"]
    assert [layer["op"] for layer in layers] == ["COPY"] + step * 3
    squares = [layer["pwl"] for layer in layers if layer["pwl"] and layer["pwl"]["function"] == "Pow"]
    assert len(squares) == 6 and all(pwl["max_error"] <= 1e-4 for pwl in squares)


def test_rnn_is_one_recurrent_layer():
    model = _recurrent_model("RNN", 1, 16, 12, 20, ["Y", "Y_h"])
    artifact = compile(model, "gna")
    assert [layer["op"] for layer in json.loads(artifact.files["report.json"])["layers"]] == ["RECURRENT"]
    reference, got = _run_both(model, _seeded((16, 1, 12)))
    assert sqnr_db(reference["Y"], got["Y"]) >= 45.0  # measured above 55 dB
    assert sqnr_db(reference["Y_h"], got["Y_h"]) >= 45.0


@pytest.mark.parametrize("weights, floor", [("int16", 40.0), ("int8", 25.0)])
def test_gru_sequence_and_last_state(weights, floor):
    model = _recurrent_model("GRU", 3, 10, 20, 24, ["Y", "Y_h"])
    artifact = compile(model, "gna", gna_weights=weights)
    step = ["COPY", "AFFINE", "AFFINE", "AFFINE", "AFFINE", "AFFINE", "AFFINE"]
    assert [layer["op"] for layer in json.loads(artifact.files["report.json"])["layers"]] == ["COPY"] * 2 + step * 10
    reference, got = _run_both(model, _seeded((10, 1, 20)), gna_weights=weights)
    for name in ("Y", "Y_h"):
        assert got[name].shape == reference[name].shape
        assert sqnr_db(reference[name], got[name]) >= floor, name
    np.testing.assert_array_equal(got["Y"][:, -1], got["Y_h"])


@pytest.mark.parametrize("op, gates, attrs, reason", [
    ("LSTM", 4, {"direction": "bidirectional"}, "direction=bidirectional"),
    ("LSTM", 4, {"clip": 3.0}, "clip and input_forget"),
    ("RNN", 1, {"activations": ["Relu"]}, "activations ['Relu']"),
    ("GRU", 3, {"linear_before_reset": 1}, "linear_before_reset=1"),
])
def test_recurrent_nodes_it_cannot_lower_are_listed_with_the_reason(op, gates, attrs, reason):
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    model = _recurrent_model(op, gates, 4, 8, 8, ["", "Y_h"], **attrs)
    if directions == 2:
        for init in model.graph.initializer:
            array = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(np.concatenate([array, array]), init.name))
        model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 2
    with pytest.raises(UnsupportedByTargetError) as caught:
        compile(model, "gna")
    assert [u.op for u in caught.value.unsupported] == [op]
    assert reason in caught.value.unsupported[0].reason
