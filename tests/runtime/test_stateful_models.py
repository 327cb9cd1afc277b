"""Stateful models (compile(state=...), --state): an LSTM run frame by frame with state matches the
same LSTM run over the whole sequence by ONNX Runtime; reset, set_state, separate state per request."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from compiler.cli import EXIT_ERROR, EXIT_OK, main
from compiler.state import StateError
from runtime import InputError

FEATURES, HIDDEN, CLASSES, FRAMES = 40, 24, 5, 12
TARGETS = ["ref", "cpu"]


def lstm_model(frames: int) -> bytes:
    """A keyword-spotter-like LSTM: x [frames, 1, 40] -> LSTM(24) -> MatMul -> scores [frames, 1, 5];
    h/c initial values are inputs h_in/c_in and their final values outputs h_out/c_out."""
    rng = np.random.default_rng(7)
    weights = {"W": rng.standard_normal((1, 4 * HIDDEN, FEATURES)) * 0.2,
               "R": rng.standard_normal((1, 4 * HIDDEN, HIDDEN)) * 0.2,
               "B": rng.standard_normal((1, 8 * HIDDEN)) * 0.1, "classes": rng.standard_normal((HIDDEN, CLASSES))}
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B", "", "h_in", "c_in"], ["y", "h_out", "c_out"],
                              hidden_size=HIDDEN, name="lstm"),
             helper.make_node("Squeeze", ["y", "one"], ["y3"], name="squeeze"),
             helper.make_node("MatMul", ["y3", "classes"], ["scores"], name="classify")]
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    initializers.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    state_type = [1, 1, HIDDEN]
    graph = helper.make_graph(nodes, "kws", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [frames, 1, FEATURES]),
        helper.make_tensor_value_info("h_in", TensorProto.FLOAT, state_type),
        helper.make_tensor_value_info("c_in", TensorProto.FLOAT, state_type)], [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [frames, 1, CLASSES]),
        helper.make_tensor_value_info("h_out", TensorProto.FLOAT, state_type),
        helper.make_tensor_value_info("c_out", TensorProto.FLOAT, state_type)], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


STATE = {"h_in": "h_out", "c_in": "c_out"}


def sequence(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((FRAMES, 1, FEATURES)).astype(np.float32)


def whole_sequence_scores(x: np.ndarray, h: np.ndarray | None = None) -> np.ndarray:
    """ONNX Runtime over the whole sequence at once, from h (zeros by default) and zero c."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(lstm_model(len(x)), providers=["CPUExecutionProvider"])
    zeros = np.zeros((1, 1, HIDDEN), np.float32)
    return session.run(["scores"], {"x": x, "h_in": zeros if h is None else h, "c_in": zeros})[0]


def frame_by_frame(run, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run({"x": x[t:t + 1]})["scores"] for t in range(len(x))])


@pytest.fixture(scope="module", params=TARGETS)
def stateful(request):
    return compiler.compile(lstm_model(1), target=request.param, state=STATE)


def test_state_leaves_the_signature(stateful):
    model = runtime.load(stateful)
    assert [i.name for i in model.inputs] == ["x"] and [o.name for o in model.outputs] == ["scores"]
    assert sorted(v.name for v in model.query_state()) == ["c_in", "h_in"]
    assert all(not v.state.any() for v in model.query_state())
    with pytest.raises(InputError, match="unknown"):
        model.infer({"x": sequence(0)[:1], "h_in": np.zeros((1, 1, HIDDEN), np.float32)})


def test_frames_with_state_match_the_whole_sequence(stateful):
    x = sequence(1)
    np.testing.assert_allclose(frame_by_frame(runtime.load(stateful).infer, x), whole_sequence_scores(x),
                               rtol=1e-4, atol=1e-5)


def test_reset_restores_the_initial_outputs(stateful):
    request = runtime.load(stateful).create_infer_request()
    x = sequence(2)
    first = frame_by_frame(request.infer, x)
    request.reset_state()
    np.testing.assert_array_equal(frame_by_frame(request.infer, x), first)


def test_interleaved_requests_keep_separate_state(stateful):
    model = runtime.load(stateful)
    requests, inputs = [model.create_infer_request() for _ in range(2)], [sequence(3), sequence(4)]
    scores = [[], []]
    for t in range(FRAMES):
        for k in (0, 1):
            scores[k].append(requests[k].infer({"x": inputs[k][t:t + 1]})["scores"])
    for k in (0, 1):
        np.testing.assert_allclose(np.concatenate(scores[k]), whole_sequence_scores(inputs[k]), rtol=1e-4, atol=1e-5)


def test_set_state_starts_from_the_given_value(stateful):
    request = runtime.load(stateful).create_infer_request()
    h = np.random.default_rng(5).standard_normal((1, 1, HIDDEN)).astype(np.float32)
    variable = next(v for v in request.query_state() if v.name == "h_in")
    variable.set_state(h)
    x = sequence(6)
    np.testing.assert_allclose(frame_by_frame(request.infer, x), whole_sequence_scores(x, h), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="state variable 'h_in'.*shape"):
        variable.set_state(np.zeros((2, HIDDEN), np.float32))


def test_initial_state_is_stored_in_the_artifact(tmp_path):
    h = np.full((1, 1, HIDDEN), 0.5, np.float32)
    path = compiler.compile(lstm_model(1), target="cpu", state=STATE, initial_state={"h_in": h}).save(tmp_path / "m")
    request = runtime.load(path).create_infer_request()
    x = sequence(8)
    np.testing.assert_allclose(frame_by_frame(request.infer, x), whole_sequence_scores(x, h), rtol=1e-4, atol=1e-5)
    request.reset_state()
    np.testing.assert_array_equal(next(v for v in request.query_state() if v.name == "h_in").state, h)


@pytest.mark.parametrize("state, initial, message", [
    ({"h": "h_out"}, {}, "state input 'h' is not an input"),
    ({"h_in": "y"}, {}, "state output 'y' .*not an output"),
    ({"h_in": "scores"}, {}, "input is float32 \\[1, 1, 24\\] but the output is float32 \\[1, 1, 5\\]"),
    ({"h_in": "h_out", "c_in": "h_out"}, {}, "same output"),
    (STATE, {"x": np.zeros((1, 1, FEATURES), np.float32)}, "not state inputs"),
    (STATE, {"h_in": np.zeros((1, HIDDEN), np.float32)}, "initial value of state 'h_in'"),
])
def test_bad_state_requests_name_what_is_wrong(state, initial, message):
    with pytest.raises(StateError, match=message):
        compiler.compile(lstm_model(1), target="ref", state=state, initial_state=initial)


def test_cli_state_flags(tmp_path, capsys):
    model_path = tmp_path / "kws.onnx"
    model_path.write_bytes(lstm_model(1))
    np.save(tmp_path / "h.npy", np.ones((1, 1, HIDDEN), np.float32))
    output = tmp_path / "kws.kiln"
    assert main(["compile", str(model_path), "-t", "cpu", "-o", str(output), "--state", "h_in=h_out", "c_in=c_out",
                 "--initial-state", f"h_in={tmp_path / 'h.npy'}"]) == EXIT_OK
    model = runtime.load(output)
    assert [i.name for i in model.inputs] == ["x"]
    assert next(v for v in model.query_state() if v.name == "h_in").state.min() == 1.0
    assert main(["compile", str(model_path), "-o", str(tmp_path / "bad"), "--state", "h_in"]) == EXIT_ERROR
    assert "use INPUT=OUTPUT" in capsys.readouterr().err
