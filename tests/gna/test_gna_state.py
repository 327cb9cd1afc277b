"""Stateful models on gna: an RNN whose initial_h is a state variable (compile(state=...)) runs its
RECURRENT layer from that variable's value, so frame-by-frame inference with state matches ONNX
Runtime over the whole sequence; reset and separate requests work as on the other targets."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from compiler.driver import UnsupportedByTargetError

FEATURES, HIDDEN, FRAMES = 16, 8, 24


def rnn_model(frames: int, cell: str = "RNN") -> bytes:
    """x [frames, 1, 16] -> RNN(8) from h_in -> Y, h_out; every weight seeded."""
    rng = np.random.default_rng(3)
    gates = {"RNN": 1, "GRU": 3}[cell]
    weights = {"W": rng.standard_normal((1, gates * HIDDEN, FEATURES)) * 0.3,
               "R": rng.standard_normal((1, gates * HIDDEN, HIDDEN)) * 0.3,
               "B": rng.standard_normal((1, 2 * gates * HIDDEN)) * 0.1}
    node = helper.make_node(cell, ["x", "W", "R", "B", "", "h_in"], ["Y", "h_out"], hidden_size=HIDDEN, name="rnn")
    state_type = [1, 1, HIDDEN]
    graph = helper.make_graph([node], "rnn", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [frames, 1, FEATURES]),
        helper.make_tensor_value_info("h_in", TensorProto.FLOAT, state_type)], [
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, [frames, 1, 1, HIDDEN]),
        helper.make_tensor_value_info("h_out", TensorProto.FLOAT, state_type)],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def sequence(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((FRAMES, 1, FEATURES)).astype(np.float32)


def whole_sequence(x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(rnn_model(len(x)), providers=["CPUExecutionProvider"])
    return session.run(["Y"], {"x": x, "h_in": np.zeros((1, 1, HIDDEN), np.float32)})[0]


def frame_by_frame(run, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run({"x": x[t:t + 1]})["Y"] for t in range(len(x))])


def snr_db(reference: np.ndarray, result: np.ndarray) -> float:
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((result - reference) ** 2))


@pytest.fixture(scope="module")
def stateful():
    return runtime.load(compiler.compile(rnn_model(1), target="gna", state={"h_in": "h_out"}))


def test_frames_with_state_match_the_whole_sequence(stateful):
    x = sequence(1)
    assert snr_db(whole_sequence(x), frame_by_frame(stateful.infer, x)) > 45


def test_reset_and_separate_requests(stateful):
    requests, inputs = [stateful.create_infer_request() for _ in range(2)], [sequence(2), sequence(3)]
    outputs = [[], []]
    for t in range(FRAMES):
        for k in (0, 1):
            outputs[k].append(requests[k].infer({"x": inputs[k][t:t + 1]})["Y"])
    for k in (0, 1):
        assert snr_db(whole_sequence(inputs[k]), np.concatenate(outputs[k])) > 45
    requests[0].reset_state()
    np.testing.assert_array_equal(frame_by_frame(requests[0].infer, inputs[0]), np.concatenate(outputs[0]))


def test_other_recurrent_cells_name_what_gna_needs():
    with pytest.raises(UnsupportedByTargetError, match="initial_h .* must be absent or zeros"):
        compiler.compile(rnn_model(1, "GRU"), target="gna", state={"h_in": "h_out"})
