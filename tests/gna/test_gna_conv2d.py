"""2-D convolutions on the gna target: CONV2D on GNA3.0 over channel-padded HWC rows, compared with onnxruntime
by SNR; refused with the reason on GNA2.0; Conv1D whose kernel x channels is not a multiple of 8."""

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from compiler.cli import main
from compiler.driver import UnsupportedByTargetError, compile
from tests.gna.test_gna_target import _model, _snr


def _cnn(seed: int = 0):
    """[1, 3, 10, 16] -> Conv 3x3 pad 1 (6 filters) + Relu -> MaxPool 2x1 -> Conv 3x3 stride 2 (4) + bias + Tanh
    -> Gemm 10."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "k1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r0"]),
             helper.make_node("MaxPool", ["r0"], ["r1"], kernel_shape=[2, 1], strides=[1, 1]),
             helper.make_node("Conv", ["r1", "k2"], ["c2"], strides=[2, 2], pads=[0, 1, 1, 0]),
             helper.make_node("Add", ["c2", "b2"], ["a2"]), helper.make_node("Tanh", ["a2"], ["t2"]),
             helper.make_node("Flatten", ["t2"], ["f"]), helper.make_node("Gemm", ["f", "w", "b3"], ["y"])]
    weights = {"k1": rng.normal(0, 0.3, (6, 3, 3, 3)), "b1": rng.normal(0, 0.1, 6),
               "k2": rng.normal(0, 0.2, (4, 6, 3, 3)), "b2": rng.normal(0, 0.1, (1, 4, 1, 1)),
               "w": rng.normal(0, 0.1, (4 * 4 * 8, 10)), "b3": rng.normal(0, 0.1, 10)}
    return _model(nodes, [1, 3, 10, 16], [1, 10], weights)


def test_a_small_cnn_runs_as_conv2d_on_gna3():
    model = _cnn()
    layers = json.loads(compile(model, "gna", generation="GNA3.0").files["report.json"])["layers"]
    assert [layer["op"] for layer in layers] == ["COPY", "TRANSPOSE", "CONV2D", "MAXPOOL", "CONV2D", "AFFINE"]
    assert _snr(model, generation="GNA3.0") >= 35.0
    assert _snr(model, generation="GNA3.0", gna_weights="int8") >= 20.0


def test_conv2d_is_refused_on_gna2_with_the_reason():
    with pytest.raises(UnsupportedByTargetError) as caught:
        compile(_cnn(), "gna")
    reasons = {u.node: u.reason for u in caught.value.unsupported}
    assert set(reasons) == {"Conv_0", "MaxPool_2", "Conv_3"}
    assert all("GNA3.0" in reason for reason in reasons.values())


def test_conv1d_with_a_filter_size_not_a_multiple_of_8_pads_its_channels():
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], dilations=[2]), helper.make_node("Sigmoid", ["c"], ["y"])]
    model = _model(nodes, [1, 5, 16], [1, 8, 12], {"k": rng.normal(0, 0.4, (8, 5, 3))})
    layers = json.loads(compile(model, "gna").files["report.json"])["layers"]
    assert [layer["op"] for layer in layers][:3] == ["COPY", "TRANSPOSE", "CONV1D"]
    assert _snr(model) >= 35.0


def test_cli_check_lists_conv2d_and_compile_takes_the_generation(tmp_path, capsys):
    onnx.save(_cnn(), tmp_path / "cnn.onnx")
    assert main(["check", str(tmp_path / "cnn.onnx"), "--target", "gna"]) != 0
    listed = capsys.readouterr().out
    assert "Conv_0 (Conv)" in listed and "MaxPool_2 (MaxPool)" in listed and "GNA3.0" in listed
    assert main(["compile", str(tmp_path / "cnn.onnx"), "-t", "gna", "--gna-generation", "GNA3.0", "-o",
                 str(tmp_path / "cnn.kiln")]) == 0
    manifest = json.loads((tmp_path / "cnn.kiln" / "manifest.json").read_text())
    assert manifest["options"]["generation"] == "GNA3.0"
