"""cpu RNN, GRU and LSTM kernels against the ref target (onnx.reference) and, for what
onnx.reference ignores (activations, clip, sequence_lens, input_forget), against ONNX Runtime;
always at 1 and 2 threads."""

from dataclasses import replace

import numpy as np
import onnxruntime
import pytest
from onnx import helper, numpy_helper

import compiler
from compiler.codegen.llvm.kernels.recurrent import Recurrence
from compiler.driver import UnsupportedByTargetError
from tests.codegen.kernel_harness import assert_cpu_matches_ref, random, run_cpu

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
INPUTS = ("x", "w", "r", "b", "sequence_lens", "initial_h", "initial_c", "p")
FEEDS = ("x", "sequence_lens", "initial_h")  # run-time inputs; the rest are initializers
ORT_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}  # ONNX Runtime's GRU uses rational tanh/sigmoid approximations


def recurrent_case(op, seq=4, batch=4, input_size=5, hidden=6, direction="forward", layout=0, dtype=np.float32,
                   optional=("b", "initial_h", "initial_c", "p"), lengths=None, outputs=None, attrs=None):
    """(model, feeds) of one recurrent node; `optional` names the optional inputs to give."""
    directions = 2 if direction == "bidirectional" else 1
    gates = GATES[op]
    state = (batch, directions, hidden) if layout else (directions, batch, hidden)
    values = {
        "x": random((batch, seq, input_size) if layout else (seq, batch, input_size), dtype, seed=0),
        "w": 0.5 * random((directions, gates * hidden, input_size), dtype, seed=1),
        "r": 0.5 * random((directions, gates * hidden, hidden), dtype, seed=2),
        "b": 0.5 * random((directions, 2 * gates * hidden), dtype, seed=3),
        "initial_h": random(state, dtype, seed=4),
        "initial_c": random(state, dtype, seed=5),
        "p": random((directions, 3 * hidden), dtype, seed=6),
    }
    if lengths is not None:
        values["sequence_lens"] = np.asarray(lengths, np.int32)
        optional = (*optional, "sequence_lens")
    if op != "LSTM":
        optional = [name for name in optional if name not in ("initial_c", "p")]
    present = ["x", "w", "r", *optional]
    names = [name if name in present else "" for name in INPUTS[:8 if op == "LSTM" else 6]]
    while not names[-1]:
        names.pop()
    outputs = outputs or (("y", "y_h", "y_c") if op == "LSTM" else ("y", "y_h"))
    node = helper.make_node(op, names, list(outputs), hidden_size=hidden, direction=direction, layout=layout,
                            **(attrs or {}))
    feeds = {name: values[name] for name in names if name in FEEDS}
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                    for name, value in feeds.items()]
    initializers = [numpy_helper.from_array(values[name], name) for name in names if name and name not in FEEDS]
    graph_outputs = [helper.make_tensor_value_info(name, elem, None) for name in outputs if name]
    graph = helper.make_graph([node], op.lower(), graph_inputs, graph_outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), feeds


def assert_cpu_matches_onnxruntime(model, feeds):
    actual = run_cpu(model, feeds)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in model.graph.output]
    for name, want in zip(names, session.run(names, feeds)):
        np.testing.assert_allclose(actual[name], want, **ORT_TOLERANCE, err_msg=name)
    return actual


# ---- against the ref target ----
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_matches_ref(op, direction, layout):
    assert_cpu_matches_ref(*recurrent_case(op, direction=direction, layout=layout))


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru_linear_before_reset(direction):
    model, feeds = recurrent_case("GRU", direction=direction, attrs={"linear_before_reset": 1})
    assert_cpu_matches_ref(model, feeds)


@pytest.mark.parametrize("op, outputs", [("RNN", ("", "y_h")), ("GRU", ("y",)), ("LSTM", ("", "", "y_c")),
                                         ("LSTM", ("y", "", "y_c"))])
def test_without_optional_inputs_and_with_some_outputs(op, outputs):
    assert_cpu_matches_ref(*recurrent_case(op, direction="bidirectional", optional=(), outputs=outputs))


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_float64_and_sizes_off_the_vector_width(op):
    model, feeds = recurrent_case(op, seq=3, batch=2, input_size=37, hidden=19, direction="bidirectional",
                                  dtype=np.float64)
    assert_cpu_matches_ref(model, feeds)


@pytest.mark.parametrize("op, batch", [("RNN", 16), ("GRU", 6), ("LSTM", 5)])
def test_batch_blocks(op, batch):
    model, feeds = recurrent_case(op, seq=5, batch=batch, input_size=9, hidden=11, direction="bidirectional")
    assert_cpu_matches_ref(model, feeds)


def test_batch_of_one_splits_directions():
    model, feeds = recurrent_case("LSTM", seq=7, batch=1, input_size=16, hidden=33, direction="bidirectional")
    assert_cpu_matches_ref(model, feeds)


def test_work_split():
    rnn = Recurrence("RNN", "float32", 10, 16, 8, 32, "bidirectional", 0, None, False, False)
    assert (rnn.block, rnn.work_items, rnn.chunk) == (8, 4, 10)
    lstm = replace(rnn, op="LSTM", batch=6, direction="forward", hidden=4096)
    assert (lstm.block, lstm.work_items, lstm.chunk) == (2, 3, 1)  # 2 x 4 gates x 4096 floats fill a chunk
    single = replace(lstm, batch=1, hidden=64)
    assert (single.block, single.work_items, single.chunk) == (1, 1, 10)


# ---- against ONNX Runtime ----
ACTIVATION_CASES = [
    ("RNN", ["LeakyRelu"], [0.3], []),
    ("RNN", ["Relu", "Softsign"], [], []),
    ("RNN", ["Affine", "ScaledTanh"], [0.7, 1.5], [0.2, 0.6]),
    ("RNN", ["Elu", "ThresholdedRelu"], [0.8, 0.1], []),
    ("GRU", ["HardSigmoid", "Softplus", "Sigmoid", "Tanh"], [0.3], [0.4]),
    ("GRU", ["Sigmoid", "ScaledTanh", "HardSigmoid", "Relu"], [0.9, 0.25], [1.2, 0.5]),
    ("LSTM", ["Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Softsign", "Affine"], [0.2, 0.3, 0.5], [0.4, 0.1]),
    ("LSTM", ["Sigmoid", "Elu", "Tanh", "Sigmoid", "Tanh", "ThresholdedRelu"], [0.6, 0.05], []),
]


@pytest.mark.parametrize("op, names, alphas, betas", ACTIVATION_CASES)
def test_activations_match_onnxruntime(op, names, alphas, betas):
    attrs = {"activations": names}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    direction = "bidirectional" if len(names) == 2 * (1 if op == "RNN" else GATES[op] - 1) else "forward"
    model, feeds = recurrent_case(op, direction=direction, attrs=attrs)
    assert_cpu_matches_onnxruntime(model, feeds)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_clip_matches_onnxruntime(op):
    model, feeds = recurrent_case(op, direction="bidirectional", attrs={"clip": 0.4})
    assert_cpu_matches_onnxruntime(model, feeds)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op, lengths", [("RNN", [4, 2, 1, 3]), ("GRU", [3, 0, 4, 1]), ("LSTM", [1, 4, 0, 2])])
def test_sequence_lens_match_onnxruntime(op, lengths, direction):
    model, feeds = recurrent_case(op, direction=direction, lengths=lengths)
    result = assert_cpu_matches_onnxruntime(model, feeds)
    for batch, length in enumerate(lengths):
        assert not result["y"][length:, :, batch].any()


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_sequence_lens_and_linear_before_reset_match_onnxruntime(linear_before_reset):
    model, feeds = recurrent_case("GRU", direction="bidirectional", lengths=[2, 4, 3, 1],
                                  attrs={"linear_before_reset": linear_before_reset})
    assert_cpu_matches_onnxruntime(model, feeds)


@pytest.mark.parametrize("optional", [("b", "initial_h", "initial_c", "p"), ("p",)])
def test_lstm_input_forget_matches_onnxruntime(optional):
    model, feeds = recurrent_case("LSTM", direction="bidirectional", optional=optional, attrs={"input_forget": 1})
    assert_cpu_matches_onnxruntime(model, feeds)


# ---- layout and bad lengths, checked against the kernel itself ----
@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_batchwise_layout_is_the_transposed_sequence_layout(op):
    common = {"direction": "bidirectional", "lengths": [3, 0, 4, 2], "optional": ("b", "initial_h", "p")}
    sequence_model, feeds = recurrent_case(op, **common)
    batchwise_model, _ = recurrent_case(op, layout=1, **common)
    swapped = {**feeds, "x": np.swapaxes(feeds["x"], 0, 1).copy(),
               "initial_h": np.swapaxes(feeds["initial_h"], 0, 1).copy()}
    sequence, batchwise = run_cpu(sequence_model, feeds), run_cpu(batchwise_model, swapped)
    np.testing.assert_array_equal(batchwise["y"], sequence["y"].transpose(2, 0, 1, 3))
    np.testing.assert_array_equal(batchwise["y_h"], sequence["y_h"].transpose(1, 0, 2))


def test_out_of_range_sequence_lens_are_clamped():
    model, feeds = recurrent_case("LSTM", direction="bidirectional", lengths=[9, -3, 2, 4])
    clamped = run_cpu(model, {**feeds, "sequence_lens": np.asarray([4, 0, 2, 4], np.int32)})
    actual = run_cpu(model, feeds)
    for name in clamped:
        np.testing.assert_array_equal(actual[name], clamped[name], err_msg=name)


@pytest.mark.parametrize("attrs, message", [
    ({"activations": ["Tanh", "Swish"]}, "activation 'Swish'"),
    ({"activations": ["Sigmoid"]}, "needs 2 activations"),
    ({"clip": -1.0}, "clip -1.0 must be positive"),
])
def test_unsupported_attributes_are_reported(attrs, message):
    model, _ = recurrent_case("GRU", attrs=attrs)
    with pytest.raises(UnsupportedByTargetError, match=message):
        compiler.compile(model, target="cpu")

