"""The probe reads intermediate values natively, or through the ref interpreter when the cpu cannot compile."""

from __future__ import annotations

import numpy as np

import compiler.driver
from compiler.ir.graph import Value
from compiler.ops.interpreter import Interpreter
from compiler.quantization.probe import Probe
from frontends.onnx.importer import import_model
from tests.quantization.models import conv_relu_matmul, samples

VALUES = [Value("x"), Value("conv"), Value("relu"), Value("matmul")]


def _expected(graph, feeds) -> list[np.ndarray]:
    probe = graph.copy()
    probe.outputs = [(f"v{i}", value) for i, value in enumerate(VALUES[1:])]
    return [feeds["x"], *Interpreter(probe).run(feeds)]


def test_native_probe_reads_inputs_and_intermediates():
    graph = import_model(conv_relu_matmul())
    feeds = {"x": samples(conv_relu_matmul())["x"][0]}
    results = Probe(graph, VALUES).run(feeds)
    for value, expected in zip(VALUES, _expected(graph, feeds)):
        np.testing.assert_allclose(results[value], expected, rtol=1e-5, atol=1e-5)


def test_graphs_the_cpu_cannot_compile_run_in_the_interpreter(monkeypatch):
    def unsupported(*args, **kwargs):
        raise compiler.driver.UnsupportedByTargetError("cpu", [])

    monkeypatch.setattr(compiler.driver, "compile", unsupported)
    graph = import_model(conv_relu_matmul())
    feeds = {"x": samples(conv_relu_matmul())["x"][1]}
    results = Probe(graph, VALUES).run(feeds)
    for value, expected in zip(VALUES, _expected(graph, feeds)):
        np.testing.assert_array_equal(results[value], expected)
