"""fold-batch-norm: BatchNormalization and constant per-channel scale/shift fold into the weights
of the producing Conv/ConvTranspose/Gemm/MatMul; the rest become one Mul+Add."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.driver import optimize
from compiler.ir.graph import Graph, Value
from compiler.ops.interpreter import Interpreter
from compiler.passes.manager import PassManager, PassSpec, VerifyInstrument
from compiler.passes.infer_types import infer_types
from tests.codegen.kernel_harness import run_cpu
from tests.passes.conftest import assert_same_graph, f32, run_pass

RNG = np.random.default_rng(0)
C = 3


def _vector(offset: float = 0.5, n: int = C) -> np.ndarray:
    return (RNG.random(n) + offset).astype(np.float32)


SCALE, BIAS, MEAN, VAR = _vector(), _vector(-0.5), _vector(-0.5), _vector()
GAIN = SCALE.astype(np.float64) / np.sqrt(VAR.astype(np.float64) + 1e-5)
SHIFT = BIAS - MEAN.astype(np.float64) * GAIN


def _fold(graph: Graph, **options) -> Graph:
    """fold-batch-norm (verified), then dead-code elimination so the replaced constants go."""
    steps = [PassSpec("fold-batch-norm", options), PassSpec("eliminate-dead-code")]
    return PassManager(steps, [VerifyInstrument()]).run(infer_types(graph))


def _assert_close_results(before: Graph, after: Graph, shape) -> None:
    feeds = {"x": RNG.standard_normal(shape).astype(np.float32)}
    for got, want in zip(Interpreter(after).run(feeds), Interpreter(before).run(feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _batch_norm(graph: Graph, data: Value, name: str = "bn") -> Value:
    params = [graph.add_constant(p, f"{name}_{k}") for p, k in zip((SCALE, BIAS, MEAN, VAR), "sbmv")]
    return Value(graph.add_node("BatchNormalization", [data, *params], version=15, name=name).name)


W = RNG.standard_normal((C, 2, 3, 3)).astype(np.float32)
CONV_BIAS = _vector(-0.5)


def _conv_bn_relu(with_bias: bool) -> Graph:
    graph = Graph()
    operands = [graph.add_input("x", f32(1, 2, 5, 5)), graph.add_constant(W, "w")]
    if with_bias:
        operands.append(graph.add_constant(CONV_BIAS, "b"))
    graph.add_node("Conv", operands, {"kernel_shape": [3, 3]}, version=11, name="conv")
    relu = graph.add_node("Relu", [_batch_norm(graph, Value("conv"))], version=14, name="relu")
    graph.add_output("y", Value(relu.name))
    return graph


@pytest.mark.parametrize("with_bias", [False, True])
def test_batch_norm_after_conv_scales_the_weights_and_makes_the_bias(with_bias):
    bias = (CONV_BIAS * GAIN + SHIFT) if with_bias else SHIFT
    expected = Graph()
    x = expected.add_input("x", f32(1, 2, 5, 5))
    weights = expected.add_constant((W * GAIN.reshape(C, 1, 1, 1)).astype(np.float32), "w.folded")
    conv = expected.add_node("Conv", [x, weights, expected.add_constant(bias.astype(np.float32), "conv.bias")],
                             {"kernel_shape": [3, 3]}, version=11, name="conv")
    expected.add_output("y", Value(expected.add_node("Relu", [Value(conv.name)], version=14, name="relu").name))

    after = _fold(_conv_bn_relu(with_bias))
    assert_same_graph(after, expected)
    np.testing.assert_array_equal(after.constant_value(after.input_values(after.node("conv"))[1]),
                                  expected.constant_value(weights))
    _assert_close_results(_conv_bn_relu(with_bias), after, (1, 2, 5, 5))


def _conv_with_scale_shift_chain() -> Graph:
    """Conv -> Mul(c[C,1,1]) -> BatchNormalization -> Add(d[1,C,1,1]) -> output."""
    graph = Graph()
    x = graph.add_input("x", f32(1, 2, 5, 5))
    graph.add_node("Conv", [x, graph.add_constant(W, "w"), graph.add_constant(CONV_BIAS, "b")],
                   {"kernel_shape": [3, 3]}, version=11, name="conv")
    scaled = graph.add_node("Mul", [graph.add_constant(np.float32([2, -1, 3]).reshape(C, 1, 1), "c"), Value("conv")],
                            version=14, name="mul")
    shift = graph.add_constant(np.float32([1, 2, 3]).reshape(1, C, 1, 1), "d")
    graph.add_output("y", Value(graph.add_node("Add", [_batch_norm(graph, Value(scaled.name)), shift],
                                               version=14, name="add").name))
    return graph


def test_scale_and_shift_before_and_after_a_batch_norm_fold_with_it():
    scale = np.float64([2, -1, 3]) * GAIN
    bias = (CONV_BIAS * scale + SHIFT + [1, 2, 3]).astype(np.float32)
    expected = Graph()
    x = expected.add_input("x", f32(1, 2, 5, 5))
    weights = expected.add_constant((W * scale.reshape(C, 1, 1, 1)).astype(np.float32), "w.folded")
    conv = expected.add_node("Conv", [x, weights, expected.add_constant(bias, "conv.bias")],
                             {"kernel_shape": [3, 3]}, version=11, name="conv")
    expected.add_output("y", Value(conv.name))

    after = _fold(_conv_with_scale_shift_chain())
    assert_same_graph(after, expected)
    _assert_close_results(_conv_with_scale_shift_chain(), after, (1, 2, 5, 5))


def test_batch_norm_after_a_grouped_conv_transpose_scales_each_output_channel():
    """Weights [C_in=4, M/group=3, 2, 2] with 2 groups: 6 output channels. Checked against onnxruntime,
    since onnx.reference (the ref target) mishandles grouped ConvTranspose."""
    ort = pytest.importorskip("onnxruntime")
    tensors = {"w": RNG.standard_normal((4, 3, 2, 2)), "s": _vector(n=6), "b": _vector(n=6), "m": _vector(n=6),
               "v": _vector(n=6)}
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["c"], group=2, strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])]
    graph = helper.make_graph(nodes, "deconv_bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, 6])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    assert [n.op_type for n in optimize(model, "cpu").nodes() if not (n.is_constant or n.is_input)] == ["ConvTranspose"]
    feeds = {"x": RNG.standard_normal((1, 4, 3, 3)).astype(np.float32)}
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(run_cpu(model, feeds)["y"], expected, rtol=1e-5, atol=1e-5)


def _gemm_bn(with_c: bool, trans_b: int) -> Graph:
    graph = Graph()
    a = graph.add_input("x", f32(2, 4))
    b = RNG.standard_normal((C, 4) if trans_b else (4, C)).astype(np.float32)
    operands = [a, graph.add_constant(b, "B")] + ([graph.add_constant(_vector(), "C")] if with_c else [])
    graph.add_node("Gemm", operands, {"transB": trans_b, "alpha": 0.5, "beta": 2.0}, version=13, name="gemm")
    graph.add_output("y", _batch_norm(graph, Value("gemm")))
    return graph


@pytest.mark.parametrize("with_c", [False, True])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_batch_norm_after_gemm_scales_b_and_makes_c(with_c, trans_b):
    before = _gemm_bn(with_c, trans_b)
    original_b = before.constant_value(Value("B")).astype(np.float64)
    original_c = before.constant_value(Value("C")).astype(np.float64) if with_c else 0.0
    after = _fold(before.copy())
    gemm = after.node("gemm")
    _, b, c = after.input_values(gemm)
    np.testing.assert_array_equal(after.constant_value(b),
                                  (original_b * (GAIN[:, None] if trans_b else GAIN)).astype(np.float32))
    np.testing.assert_array_equal(after.constant_value(c), (2.0 * original_c * GAIN + SHIFT).astype(np.float32))
    assert gemm.attrs["beta"] == 1.0 and gemm.attrs["alpha"] == 0.5
    assert "BatchNormalization" not in str(after)
    _assert_close_results(before, after, (2, 4))


def _matmul(tail: list[str]) -> Graph:
    """x[2,4] @ w[4,C] followed by the `tail` ops: "bias" (Add b[C]), "scale" (Mul s[1,C]), "bn"."""
    graph = Graph()
    x = graph.add_input("x", f32(2, 4))
    value = Value(graph.add_node("MatMul", [x, graph.add_constant(W.reshape(-1)[:4 * C].reshape(4, C), "w")],
                                 version=13, name="mm").name)
    for op in tail:
        if op == "bn":
            value = _batch_norm(graph, value)
        else:
            constant = graph.add_constant(np.float32([[1, -2, 3]]) if op == "scale" else CONV_BIAS, op)
            value = Value(graph.add_node("Mul" if op == "scale" else "Add", [value, constant], version=14,
                                         name=op + "_op").name)
    graph.add_output("y", value)
    return graph


def test_a_matmul_bias_add_then_batch_norm_become_one_matmul_and_one_add():
    after = _fold(_matmul(["bias", "bn"]))
    expected = Graph()
    x = expected.add_input("x", f32(2, 4))
    weights = (W.reshape(-1)[:4 * C].reshape(4, C) * GAIN).astype(np.float32)
    mm = expected.add_node("MatMul", [x, expected.add_constant(weights, "w.folded")], version=13, name="mm")
    bias = expected.add_constant((CONV_BIAS * GAIN + SHIFT).astype(np.float32), "mm.bias")
    expected.add_output("y", Value(expected.add_node("Add", [Value(mm.name), bias], version=14,
                                                     name="mm.add_bias").name))
    assert_same_graph(after, expected)
    _assert_close_results(_matmul(["bias", "bn"]), after, (2, 4))


def test_a_scale_after_matmul_needs_no_add_and_a_lone_bias_add_stays():
    after = _fold(_matmul(["scale"]))
    assert [n.op_type for n in after.topological_order() if not (n.is_constant or n.is_input)] == ["MatMul"]
    _assert_close_results(_matmul(["scale"]), after, (2, 4))
    assert_same_graph(_fold(_matmul(["bias"])), _matmul(["bias"]))


def _shared_conv_bn_mul(shared: bool) -> Graph:
    """Conv whose result a BatchNormalization (then Mul by c[C,1,1]) reads, and the graph output too when `shared`."""
    graph = Graph()
    x = graph.add_input("x", f32(1, 2, 5, 5))
    graph.add_node("Conv", [x, graph.add_constant(W, "w")], {"kernel_shape": [3, 3]}, version=11, name="conv")
    scaled = graph.add_node("Mul", [_batch_norm(graph, Value("conv")),
                                    graph.add_constant(np.float32([2, 3, 4]).reshape(C, 1, 1), "c")], version=14)
    graph.add_output("y", Value(graph.add_node("Relu", [Value(scaled.name)], version=14, name="relu").name))
    if shared:
        graph.add_output("conv", Value("conv"))
    return graph


def test_a_batch_norm_whose_producer_has_other_readers_becomes_mul_add_with_its_scale_folded_in():
    gain = GAIN * [2, 3, 4]
    expected = Graph()
    x = expected.add_input("x", f32(1, 2, 5, 5))
    conv = expected.add_node("Conv", [x, expected.add_constant(W, "w")], {"kernel_shape": [3, 3]}, version=11,
                             name="conv")
    scale = expected.add_constant(gain.astype(np.float32).reshape(C, 1, 1), "bn.scale")
    shift = expected.add_constant((SHIFT * [2, 3, 4]).astype(np.float32).reshape(C, 1, 1), "bn.shift")
    mul = expected.add_node("Mul", [Value(conv.name), scale], version=14, name="bn.mul")
    add = expected.add_node("Add", [Value(mul.name), shift], version=14, name="bn.add")
    expected.add_output("y", Value(expected.add_node("Relu", [Value(add.name)], version=14, name="relu").name))
    expected.add_output("conv", Value(conv.name))

    after = _fold(_shared_conv_bn_mul(shared=True))
    assert_same_graph(after, expected)
    _assert_close_results(_shared_conv_bn_mul(shared=True), after, (1, 2, 5, 5))


def test_the_mul_add_rewrite_can_be_switched_off():
    after = _fold(_shared_conv_bn_mul(shared=True), batch_norm_to_mul_add=False)
    assert_same_graph(after, _shared_conv_bn_mul(shared=True))


def _not_foldable(kind: str) -> Graph:
    graph = Graph()
    x = graph.add_input("x", f32(1, 3, 4, 4))
    if kind == "spatial_mul":  # varies along the width: not one factor per channel
        graph.add_node("Conv", [x, graph.add_constant(W.reshape(-1)[:9].reshape(C, 3, 1, 1), "w")], version=11,
                       name="conv")
        constant = graph.add_constant(np.float32([1, 2, 3, 4]), "c")
        graph.add_output("y", Value(graph.add_node("Mul", [Value("conv"), constant], version=14).name))
    elif kind == "training":
        params = [graph.add_constant(p, k) for p, k in zip((SCALE, BIAS, MEAN, VAR), "sbmv")]
        bn = graph.add_node("BatchNormalization", [x, *params], {"training_mode": 1}, version=15, num_outputs=3)
        graph.add_output("y", Value(bn.name))
    elif kind == "input_params":
        params = [graph.add_input(k, f32(C)) for k in "sbmv"]
        graph.add_output("y", Value(graph.add_node("BatchNormalization", [x, *params], version=15).name))
    elif kind == "weights_input":
        w = graph.add_input("w", f32(C, 3, 1, 1))
        graph.add_node("Conv", [x, w], version=11, name="conv")
        graph.add_output("y", Value(graph.add_node("Mul", [Value("conv"), graph.add_constant(SCALE.reshape(C, 1, 1),
                                                                                               "c")], version=14).name))
    return graph


@pytest.mark.parametrize("kind", ["spatial_mul", "training", "input_params", "weights_input"])
def test_what_cannot_fold_is_left_alone(kind):
    assert_same_graph(run_pass("fold-batch-norm", _not_foldable(kind)), _not_foldable(kind))


def _conv_bn_relu_model(dtype=np.float32):
    """Conv(bias) -> BatchNormalization -> Relu -> Conv -> BatchNormalization as an ONNX model."""
    rng = np.random.default_rng(1)
    tensors = {"w1": rng.standard_normal((8, 3, 3, 3)), "b1": rng.standard_normal(8),
               "w2": rng.standard_normal((4, 8, 1, 1))}
    for layer, channels in (("bn1", 8), ("bn2", 4)):
        tensors.update({f"{layer}_s": rng.random(channels) + 0.5, f"{layer}_b": rng.standard_normal(channels),
                        f"{layer}_m": rng.standard_normal(channels), f"{layer}_v": rng.random(channels) + 0.5})
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"]),
             helper.make_node("BatchNormalization", ["c2", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["y"])]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(nodes, "conv_bn_relu", [helper.make_tensor_value_info("x", elem, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", elem, [1, 4, 8, 8])],
                              [numpy_helper.from_array(v.astype(dtype), k) for k, v in tensors.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_bn_relu_on_cpu_matches_ref_and_onnxruntime(dtype):
    import runtime

    model = _conv_bn_relu_model(dtype)
    assert "BatchNormalization" not in {n.op_type for n in optimize(model, "cpu").nodes()}
    feeds = {"x": np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(dtype)}
    actual = run_cpu(model, feeds)["y"]
    expected = runtime.load(compiler.compile(model, target="ref")).infer(feeds)["y"]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    if dtype == np.float32:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(actual, session.run(None, feeds)[0], rtol=1e-5, atol=1e-5)


def test_the_pass_is_in_the_cpu_pipeline_and_can_be_disabled():
    model = _conv_bn_relu_model()
    ops = {n.op_type for n in optimize(model, "cpu", disable=["fold-batch-norm"]).nodes()}
    assert "BatchNormalization" in ops
