"""kiln::FusedSoftmax and kiln::FusedLayerNormalization on the cpu target against ONNX Runtime, at 1 and 2
threads; with their prologue taken as is, bit for bit what the unfused kernels compute."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import compiler
import runtime
from bench.models import bert_encoder
from compiler.driver import optimize
from tests.codegen.kernel_harness import random, run_cpu

ort = pytest.importorskip("onnxruntime")


def _model(nodes: list, feeds: dict, constants: dict, opset: int = 17):
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                    for name, value in feeds.items()]
    initializers = [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()]
    graph = helper.make_graph(nodes, "normalization", graph_inputs, [helper.make_value_info("y", helper.TypeProto())],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _onnxruntime(model, feeds: dict) -> list:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _fused_nodes(model) -> list:
    return [node.attrs["fused_nodes"] for node in optimize(model, "cpu").nodes()
            if node.op_type in ("FusedSoftmax", "FusedLayerNormalization")]


def _assert_fused_matches(model, feeds: dict, fused: list, unfused_exact: bool = True, rtol: float = 1e-5) -> None:
    assert _fused_nodes(model) == fused
    got = run_cpu(model, feeds)["y"]
    want, = _onnxruntime(model, feeds)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol / 10)
    if unfused_exact:
        unfused = runtime.load(compiler.compile(model, target="cpu", disable=["fuse-normalization"])).infer(feeds)
        np.testing.assert_array_equal(got, unfused["y"])


def _node(op, inputs, output, **attrs):
    return helper.make_node(op, inputs, [output], name=output, **attrs)


@pytest.mark.parametrize("shape, mask_shape", [((2, 4, 9, 37), (2, 1, 1, 37)), ((3, 300), (300,)), ((1, 2, 5, 2), ())])
def test_scaled_masked_softmax(shape, mask_shape):
    x, mask = random(shape, seed=1) * 3, random(mask_shape, seed=2)
    nodes = [_node("Mul", ["x", "scale"], "scaled"), _node("Add", ["scaled", "mask"], "masked"),
             _node("Softmax", ["masked"], "y", axis=-1)]
    model = _model(nodes, {"x": x, "mask": mask}, {"scale": np.array(0.125, np.float32)})
    _assert_fused_matches(model, {"x": x, "mask": mask}, [["scaled", "masked", "y"]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_residual_layer_norm(dtype):
    x, residual = random((2, 7, 48), dtype, seed=3), random((2, 7, 48), dtype, seed=4)
    constants = {"scale": random((48,), dtype, seed=5), "bias": random((48,), dtype, seed=6)}
    nodes = [_node("Add", ["x", "residual"], "sum"),
             _node("LayerNormalization", ["sum", "scale", "bias"], "y", axis=-1, epsilon=1e-5)]
    model = _model(nodes, {"x": x, "residual": residual}, constants)
    _assert_fused_matches(model, {"x": x, "residual": residual}, [["sum", "y"]])


def test_layer_norm_over_two_axes_with_operands_broadcast_inside_them():
    """Normalized dims (4, 5): the shift varies along the first and broadcasts along the second."""
    x, shift = random((2, 3, 4, 5), seed=7), random((4, 1), seed=8)
    constants = {"scale": random((4, 5), seed=9)}
    nodes = [_node("Add", ["x", "shift"], "shifted"), _node("Relu", ["shifted"], "active"),
             _node("LayerNormalization", ["active", "scale"], "y", axis=2, epsilon=1e-3)]
    model = _model(nodes, {"x": x, "shift": shift}, constants)
    _assert_fused_matches(model, {"x": x, "shift": shift}, [["shifted", "active", "y"]])


def _written_out(x: str, scale: str, bias: str, output: str, epsilon: str = "epsilon") -> list:
    """LayerNormalization over the last axis as exporters write it (ReduceMean of opset 17)."""
    axes, p = [-1], f"{output}."
    return [_node("ReduceMean", [x], p + "mean", axes=axes), _node("Sub", [x, p + "mean"], p + "centered"),
            _node("Pow", [p + "centered", "two"], p + "squared"),
            _node("ReduceMean", [p + "squared"], p + "variance", axes=axes),
            _node("Add", [p + "variance", epsilon], p + "padded"), _node("Sqrt", [p + "padded"], p + "std"),
            _node("Div", [p + "centered", p + "std"], p + "normalized"),
            _node("Mul", [p + "normalized", scale], p + "scaled"), _node("Add", [p + "scaled", bias], output)]


def test_written_out_layer_norm_with_its_residual():
    x, residual = random((3, 5, 64), seed=10), random((3, 5, 64), seed=11)
    constants = {"scale": random((64,), seed=12), "bias": random((64,), seed=13), "two": np.array(2.0, np.float32),
                 "epsilon": np.array(1e-5, np.float32)}
    nodes = [_node("Add", ["x", "residual"], "sum"), *_written_out("sum", "scale", "bias", "y")]
    model = _model(nodes, {"x": x, "residual": residual}, constants)
    names = ["sum"] + [node.name for node in nodes[1:]]
    _assert_fused_matches(model, {"x": x, "residual": residual}, [names], unfused_exact=False)


def _with_written_out_layer_norms(model):
    """`model` with each LayerNormalization node written out (ReduceMean, Sub, Pow, ...)."""
    written = helper.make_model(model.graph, opset_imports=model.opset_import)
    graph = written.graph
    nodes = []
    for node in graph.node:
        if node.op_type != "LayerNormalization":
            nodes.append(node)
            continue
        epsilon = next(a.f for a in node.attribute if a.name == "epsilon")
        epsilon_name = f"{node.output[0]}.epsilon"
        graph.initializer.append(numpy_helper.from_array(np.array(epsilon, np.float32), epsilon_name))
        nodes += _written_out(*node.input, node.output[0], epsilon=epsilon_name)
    graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    del graph.node[:]
    graph.node.extend(nodes)
    return written


@pytest.mark.parametrize("written_out", [False, True])
def test_bert_encoder(written_out):
    """The embedding sum fuses into the first LayerNorm; written out, every LayerNorm becomes one node.
    (The scale and mask before each Softmax, the residual Adds before the others, are taken by fuse-epilogues.)"""
    bench = bert_encoder(sequence=32, layers=2, hidden=64, heads=4, vocabulary=500)
    model = _with_written_out_layer_norms(bench.model) if written_out else bench.model
    feeds = bench.make_inputs(np.random.default_rng(0))
    fused = _fused_nodes(model)
    assert len(fused) == (5 if written_out else 1) and fused[0][0].startswith("embedded")
    got = run_cpu(model, feeds)
    want, = _onnxruntime(model, feeds)
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-3, atol=1e-4)
