"""The int8 report ranks the layer that adds the error first and measures the outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from onnx import helper

from compiler.driver import compile
from compiler.passes.quantize_static import QuantizeStatic, plan_quantization
from compiler.quantization.ranges import collect_ranges
from compiler.quantization.report import format_report, quantization_report
from frontends.onnx.importer import import_model
from tests.quantization.models import model, samples, small_cnn


def _mlp():
    """x[1,16] -> MatMul "a" -> Relu -> MatMul "b" -> Relu -> MatMul "c" -> y[1,8]."""
    rng = np.random.default_rng(11)
    weights = {name: (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
               for name, shape in (("wa", (16, 16)), ("wb", (16, 16)), ("wc", (16, 8)))}
    nodes = [helper.make_node("MatMul", ["x", "wa"], ["ya"], name="a"),
             helper.make_node("Relu", ["ya"], ["ra"], name="relu_a"),
             helper.make_node("MatMul", ["ra", "wb"], ["yb"], name="b"),
             helper.make_node("Relu", ["yb"], ["rb"], name="relu_b"),
             helper.make_node("MatMul", ["rb", "wc"], ["y"], name="c")]
    return model(nodes, {"x": [1, 16]}, {"y": [1, 8]}, weights)


def test_a_layer_with_an_outlier_stretched_range_ranks_first():
    onnx_model = _mlp()
    graph = import_model(onnx_model)
    stacks = samples(onnx_model, count=16)
    plan = plan_quantization(graph)
    ranges = {graph.value_name(v): r for v, r in collect_ranges(graph, plan.measured(), stacks).items()}
    low, high = ranges["rb"]
    ranges["rb"] = (low, high * 500)  # as if one calibration sample had a huge outlier at b's output
    quantized = QuantizeStatic(ranges)(graph.copy())
    report = quantization_report(graph, quantized, plan, stacks, {})
    layers = {entry["layer"]: entry for entry in report["layers"]}
    assert report["layers"][0]["layer"] == "b" and report["layers"][0]["op"] == "MatMul+Relu"
    assert layers["b"]["local_sqnr_db"] < 15 < 30 < layers["a"]["local_sqnr_db"]
    # c inherits b's error (accumulated SQNR low) but adds little of its own (its weights only)
    assert layers["c"]["sqnr_db"] < 15 and layers["c"]["local_sqnr_db"] > 30
    assert layers["c"]["scale"] is None  # a graph output: kept float
    table = format_report({**report, "calibration": {}})
    assert table.splitlines()[2].startswith("b ")


def test_report_in_the_artifact_and_at_a_path(tmp_path):
    onnx_model = small_cnn()
    np.savez(tmp_path / "calibration.npz", **samples(onnx_model, count=6))
    artifact = compile(onnx_model, "ref", precision="int8", calibration=str(tmp_path / "calibration.npz"),
                       calibration_size=4, report=tmp_path / "report.json")
    report = json.loads(artifact.files["report.json"])
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert report["kind"] == "int8" and report["calibration"] == {
        "source": str(tmp_path / "calibration.npz"), "samples": 4, "method": "minmax"}
    ranked = [math.inf if entry["local_sqnr_db"] is None else entry["local_sqnr_db"] for entry in report["layers"]]
    assert ranked == sorted(ranked) and ranked[-1] == math.inf  # MaxPool of quantized values adds no error
    (output,) = report["outputs"]
    assert output["output"] == "y" and 0.0 <= output["top1_agreement"] <= 1.0 and output["snr_db"] > 20


@pytest.mark.parametrize("method", ["percentile", "entropy", "mse"])
def test_every_method_gives_a_working_model(method, tmp_path):
    onnx_model = small_cnn()
    np.savez(tmp_path / "calibration.npz", **samples(onnx_model, count=6))
    artifact = compile(onnx_model, "ref", precision="int8", calibration=str(tmp_path / "calibration.npz"),
                       calibration_method=method)
    report = json.loads(artifact.files["report.json"])
    # entropy's divergence is noisy over few values (6 samples here): a lower bar for all
    assert report["calibration"]["method"] == method and report["outputs"][0]["snr_db"] > 10
