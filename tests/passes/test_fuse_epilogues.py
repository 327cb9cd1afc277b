"""fuse-epilogues: the elementwise tail of a Conv/Gemm/MatMul becomes part of one kiln::Fused* node."""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import KILN_DOMAIN, Graph, Value
from compiler.passes.manager import PassContext, get_pass
from tests.passes.conftest import assert_same_graph, assert_same_results, f32, run_pass, run_verified

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
BIAS = RNG.standard_normal((4, 1, 1)).astype(np.float32)
FEEDS = {"x": RNG.standard_normal((1, 3, 5, 5)).astype(np.float32),
         "r": RNG.standard_normal((1, 4, 5, 5)).astype(np.float32)}
CONV = {"pads": [1, 1, 1, 1]}


def _conv(graph: Graph) -> tuple[Value, Value]:
    """(x, conv(x)) in `graph`."""
    x = graph.add_input("x", f32(1, 3, 5, 5))
    w = graph.add_constant(W, "w")
    return x, Value(graph.add_node("Conv", [x, w], CONV, version=11, name="conv").name)


def _conv_bias_residual_relu() -> Graph:
    """y = Relu(conv(x) + bias + r)."""
    graph = Graph()
    _, conv = _conv(graph)
    r = graph.add_input("r", f32(1, 4, 5, 5))
    bias = graph.add_node("Add", [conv, graph.add_constant(BIAS, "bias")], version=14, name="biased")
    residual = graph.add_node("Add", [Value(bias.name), r], version=14, name="residual")
    graph.add_output("y", Value(graph.add_node("Relu", [Value(residual.name)], version=14, name="y").name))
    return graph


def _producer(graph: Graph, output: str):
    """The node computing graph output `output` (replaced nodes keep their value names, not node names)."""
    return graph.node(dict(graph.outputs)[output].node)


def _fused_conv(graph: Graph, inputs, steps, activation: str, names, output: str = "y") -> Value:
    attrs = {**CONV, "epilogue": steps, "activation": activation, "fused_nodes": names}
    return Value(graph.add_node("FusedConv", inputs, attrs, domain=KILN_DOMAIN, version=11, name=output,
                                output_names=[output]).name)


def test_bias_residual_and_relu_fuse_into_the_conv():
    expected = Graph()
    x = expected.add_input("x", f32(1, 3, 5, 5))
    w = expected.add_constant(W, "w")
    r = expected.add_input("r", f32(1, 4, 5, 5))
    bias = expected.add_constant(BIAS, "bias")
    steps = [["Add", 14, [], [0, 1]], ["Add", 14, [], [3, 2]], ["Relu", 14, [], [4]]]
    expected.add_output("y", _fused_conv(expected, [x, w, None, bias, r], steps, "Relu",
                                         ["conv", "biased", "residual", "y"]))

    after = run_verified("fuse-epilogues", _conv_bias_residual_relu())
    assert_same_graph(after, expected)
    assert_same_results(_conv_bias_residual_relu(), after, FEEDS)


def test_a_value_also_used_outside_ends_the_group_before_it():
    before = _conv_bias_residual_relu()
    before.add_output("biased", Value("biased"))  # the biased result is needed by itself

    after = run_verified("fuse-epilogues", before)
    fused = [n for n in after.nodes() if n.op_type == "FusedConv"]
    assert [n.attrs["fused_nodes"] for n in fused] == [["conv", "biased"]]
    assert _producer(after, "y").op_type == "Relu" and after.node("residual").op_type == "Add"
    assert_same_results(before, after, FEEDS)


def test_a_reader_that_is_not_elementwise_stops_the_group():
    """conv -> Relu -> MaxPool, and the Relu result also feeds an Add: only Relu can join the conv."""
    before = Graph()
    _, conv = _conv(before)
    relu = Value(before.add_node("Relu", [conv], version=14, name="relu").name)
    before.add_output("pooled", Value(before.add_node("MaxPool", [relu], {"kernel_shape": [2, 2]}, version=12,
                                                      name="pooled").name))
    before.add_output("y", Value(before.add_node("Add", [relu, relu], version=14, name="y").name))

    after = run_verified("fuse-epilogues", before)
    assert [n.attrs["fused_nodes"] for n in after.nodes() if n.op_type == "FusedConv"] == [["conv", "relu"]]
    assert _producer(after, "y").op_type == "Add"
    assert_same_results(before, after, FEEDS)


def test_gelu_erf_formula_reads_the_conv_twice_and_fuses_whole():
    """y = conv * 0.5 * (1 + erf(conv / sqrt 2))."""
    before = Graph()
    _, conv = _conv(before)
    root2 = before.add_constant(np.array(1.4142135, np.float32), "root2")
    one = before.add_constant(np.array(1.0, np.float32), "one")
    half = before.add_constant(np.array(0.5, np.float32), "half")
    scaled = before.add_node("Div", [conv, root2], version=14, name="scaled")
    erf = before.add_node("Erf", [Value(scaled.name)], version=13, name="erf")
    shifted = before.add_node("Add", [Value(erf.name), one], version=14, name="shifted")
    gated = before.add_node("Mul", [conv, Value(shifted.name)], version=14, name="gated")
    before.add_output("y", Value(before.add_node("Mul", [Value(gated.name), half], version=14, name="y").name))

    after = run_verified("fuse-epilogues", before)
    (fused,) = [n for n in after.nodes() if not (n.is_input or n.is_constant)]
    assert fused.op_type == "FusedConv" and fused.attrs["activation"] == "Erf"
    assert fused.attrs["fused_nodes"] == ["conv", "scaled", "erf", "shifted", "gated", "y"]
    assert_same_results(before, after, FEEDS)


def test_matmul_bias_and_gemm_activation():
    before = Graph()
    a = before.add_input("a", f32(2, 3, 8))
    b = before.add_constant(RNG.standard_normal((8, 5)).astype(np.float32), "b")
    bias = before.add_constant(RNG.standard_normal(5).astype(np.float32), "bias")
    product = before.add_node("MatMul", [a, b], version=13, name="product")
    biased = before.add_node("Add", [Value(product.name), bias], version=14, name="biased")
    before.add_output("y", Value(before.add_node("Tanh", [Value(biased.name)], version=13, name="y").name))
    m = before.add_input("m", f32(4, 8))
    gemm = before.add_node("Gemm", [m, b], {"alpha": 0.5}, version=13, name="gemm")
    before.add_output("z", Value(before.add_node("LeakyRelu", [Value(gemm.name)], {"alpha": 0.1}, version=16,
                                                 name="z").name))

    after = run_verified("fuse-epilogues", before)
    matmul, gemm = _producer(after, "y"), _producer(after, "z")
    assert (matmul.op_type, matmul.attrs["activation"], matmul.attrs["epilogue"]) == \
        ("FusedMatMul", "Tanh", [["Add", 14, [], [0, 1]], ["Tanh", 13, [], [2]]])
    assert (gemm.op_type, gemm.attrs["alpha"], gemm.attrs["epilogue"]) == \
        ("FusedGemm", 0.5, [["LeakyRelu", 16, [["alpha", 0.1]], [0]]])
    assert after.input_values(gemm)[2] is None  # Gemm's absent C keeps its position
    feeds = {"a": RNG.standard_normal((2, 3, 8)).astype(np.float32),
             "m": RNG.standard_normal((4, 8)).astype(np.float32)}
    assert_same_results(before, after, feeds)


def test_a_broadcasting_operand_that_grows_the_result_is_not_fused():
    """conv + a [1, 4, 5, 5] tensor is fused; conv + a [2, 4, 5, 5] one (a bigger result) is not."""
    before = Graph()
    _, conv = _conv(before)
    wide = before.add_input("wide", f32(2, 4, 5, 5))
    before.add_output("y", Value(before.add_node("Add", [conv, wide], version=14, name="y").name))
    after = run_pass("fuse-epilogues", before)
    assert after.node("conv").op_type == "Conv" and _producer(after, "y").op_type == "Add"


def test_a_lone_conv_and_integer_matmul_are_left_alone():
    before = Graph()
    _, conv = _conv(before)
    before.add_output("y", conv)
    a = before.add_input("a", f32(2, 2))
    ints = before.add_input("i", f32(2, 2))
    product = before.add_node("MatMul", [a, ints], version=13, name="product")
    before.add_output("z", Value(before.add_node("Cast", [Value(product.name)], {"to": 6}, version=21, name="z").name))
    after = run_pass("fuse-epilogues", before)
    assert {n.op_type for n in after.nodes() if not (n.is_input or n.is_constant)} == {"Conv", "MatMul", "Cast"}


def test_a_small_output_conv_gets_its_weights_transposed():
    """7 x 7 outputs, 64 channels: the kernel's vectors run along the channels, so the weights become
    blocks of the matrix [C * taps, M]; the fused node still computes the conv's results."""
    weights = RNG.standard_normal((64, 3, 3, 3)).astype(np.float32)
    before = Graph()
    x = before.add_input("x", f32(1, 3, 7, 7))
    conv = before.add_node("Conv", [x, before.add_constant(weights, "w")], CONV, version=11, name="conv")
    before.add_output("y", Value(before.add_node("Relu", [Value(conv.name)], version=14, name="y").name))

    after = run_verified("fuse-epilogues", before)
    fused = _producer(after, "y")
    assert fused.attrs["transposed_weights"] == 1 and fused.attrs["kernel_shape"] == [3, 3]
    blocked = after.constant_value(after.input_values(fused)[1])
    blocks, taps, block = blocked.shape
    assert blocks * block == 64 and taps == 27
    np.testing.assert_array_equal(np.concatenate(list(blocked), axis=1), weights.reshape(64, 27).T)
    assert_same_results(before, after, {"x": RNG.standard_normal((1, 3, 7, 7)).astype(np.float32)})


def test_a_lone_small_output_conv_becomes_a_fused_conv_for_its_transposed_weights():
    """Nothing to fuse, but the kernel's channel-vector form still wants the weights transposed."""
    weights = RNG.standard_normal((64, 96, 1, 1)).astype(np.float32)
    before = Graph()
    x = before.add_input("x", f32(1, 96, 7, 7))
    conv = before.add_node("Conv", [x, before.add_constant(weights, "w")], {"kernel_shape": [1, 1]}, version=11,
                           name="conv")
    before.add_output("y", Value(conv.name))

    after = run_verified("fuse-epilogues", before)
    fused = _producer(after, "y")
    assert fused.op_type == "FusedConv" and fused.attrs["epilogue"] == [] and fused.attrs["transposed_weights"] == 1
    assert fused.attrs["kernel_shape"] == [1, 1] and fused.attrs["fused_nodes"] == ["conv"]
    assert fused.attrs["out_channels"] == 64
    assert_same_results(before, after, {"x": RNG.standard_normal((1, 96, 7, 7)).astype(np.float32)})


def test_channels_past_whole_blocks_get_zero_weights():
    """120 output channels in blocks of 32: the last block's 8 extra columns are zeros, and out_channels
    keeps the conv's 120 (its output shape and reference semantics)."""
    weights = RNG.standard_normal((120, 96, 3, 3)).astype(np.float32)
    before = Graph()
    x = before.add_input("x", f32(1, 96, 7, 7))
    conv = before.add_node("Conv", [x, before.add_constant(weights, "w")], CONV, version=11, name="conv")
    before.add_output("y", Value(conv.name))

    after = run_verified("fuse-epilogues", before)
    fused = _producer(after, "y")
    blocked = after.constant_value(after.input_values(fused)[1])
    blocks, taps, block = blocked.shape
    assert fused.attrs["out_channels"] == 120 and blocks * block > 120 and taps == 96 * 9
    columns = np.concatenate(list(blocked), axis=1)
    np.testing.assert_array_equal(columns[:, :120], weights.reshape(120, -1).T)
    assert not columns[:, 120:].any()
    assert_same_results(before, after, {"x": RNG.standard_normal((1, 96, 7, 7)).astype(np.float32)})


def test_fold_constants_evaluates_a_fused_node_of_constants():
    graph = Graph()
    a = graph.add_constant(np.array([[1.0, -2.0]], np.float32), "a")
    b = graph.add_constant(np.array([[1.0], [1.0]], np.float32), "b")
    product = graph.add_node("MatMul", [a, b], version=13, name="product")
    graph.add_output("y", Value(graph.add_node("Relu", [Value(product.name)], version=14, name="y").name))
    fused = run_pass("fuse-epilogues", graph)
    assert _producer(fused, "y").op_type == "FusedMatMul"
    folded = get_pass("fold-constants")(fused, PassContext())
    assert folded.constant_value(folded.outputs[0][1]).tolist() == [[0.0]]


def test_the_pass_can_be_switched_off_in_the_cpu_pipeline():
    from onnx import helper, numpy_helper

    from compiler.driver import optimize

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, (1, 3, 5, 5))],
                              [helper.make_value_info("y", helper.TypeProto())],
                              initializer=[numpy_helper.from_array(W, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert {n.op_type for n in optimize(model, "cpu").nodes()} >= {"FusedConv"}
    assert {n.op_type for n in optimize(model, "cpu", disable=["fuse-epilogues"]).nodes()} >= {"Conv", "Relu"}
