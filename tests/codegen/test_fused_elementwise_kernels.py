"""kiln::FusedElementwise on the cpu target: matches the ref target and, bit for bit, the unfused kernels."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import compiler
import runtime
from compiler.driver import optimize
from compiler.ir.graph import KILN_DOMAIN, Graph
from compiler.ir.types import TensorType
from compiler.targets.cpu import CpuTarget
from tests.codegen.kernel_harness import TOLERANCE, random, run_cpu


def chain_model(nodes: list, feeds: dict, constants: dict | None = None, opset: int = 17):
    """A model of `nodes` (helper.make_node) reading graph inputs `feeds` and initializers `constants`; output y."""
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                    for name, value in feeds.items()]
    initializers = [numpy_helper.from_array(np.asarray(value), name) for name, value in (constants or {}).items()]
    graph = helper.make_graph(nodes, "chain", graph_inputs, [helper.make_value_info("y", helper.TypeProto())],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def assert_fused_matches(model, feeds: dict, steps: int, exact: bool = False, tolerance: dict = TOLERANCE) -> None:
    """The cpu graph holds one fused node of `steps` steps; at 1 and 2 threads it matches the ref target
    (within `tolerance` unless `exact`) and, bit for bit, the unfused cpu kernels."""
    fused = [n for n in optimize(model, "cpu").nodes() if n.op_type == "FusedElementwise"]
    assert [len(n.attrs["steps"]) for n in fused] == [steps]
    want = runtime.load(compiler.compile(model, target="ref")).infer(feeds)["y"]
    got = run_cpu(model, feeds)["y"]
    assert got.dtype == want.dtype and got.shape == want.shape
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), **tolerance)
    unfused = runtime.load(compiler.compile(model, target="cpu", disable=["fuse-elementwise"])).infer(feeds)
    np.testing.assert_array_equal(got, unfused["y"])


def _node(op, inputs, output, **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


@pytest.mark.parametrize("shapes", [((2, 16, 9, 9), (16, 1, 1)), ((3, 1, 7), (1, 5, 1)), ((), (6,)), ((33,), ())])
def test_mul_add_relu_with_broadcasting(shapes):
    x, scale = random(shapes[0], seed=1), random(shapes[1], seed=2)
    shift = random(shapes[1], seed=3)
    nodes = [_node("Mul", ["x", "scale"], "m"), _node("Add", ["m", "shift"], "a"), _node("Relu", ["a"], "y")]
    model = chain_model(nodes, {"x": x, "scale": scale}, {"shift": shift})
    assert_fused_matches(model, {"x": x, "scale": scale}, steps=3)


def test_shared_value_gelu_expression():
    """Gelu's erf form over x + b: the sum feeds two steps and is computed once per element."""
    x, b = random((4, 64), seed=4), random((64,), seed=5)
    nodes = [_node("Add", ["x", "b"], "t"), _node("Div", ["t", "sqrt2"], "s"), _node("Erf", ["s"], "e"),
             _node("Add", ["e", "one"], "e1"), _node("Mul", ["t", "e1"], "p"), _node("Mul", ["p", "half"], "y")]
    constants = {"sqrt2": np.array(np.sqrt(2), np.float32), "one": np.array(1, np.float32),
                 "half": np.array(0.5, np.float32)}
    assert_fused_matches(chain_model(nodes, {"x": x}, {"b": b, **constants}), {"x": x}, steps=6)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_float16_rounds_after_every_step_and_float64(dtype):
    x, y = random((5, 40), dtype, seed=6), random((40,), dtype, seed=7)
    nodes = [_node("Sub", ["x", "w"], "d"), _node("Sigmoid", ["d"], "s"), _node("Mul", ["s", "x"], "m"),
             _node("Tanh", ["m"], "y")]
    tolerance = {"rtol": 4e-3, "atol": 1e-3} if dtype == np.float16 else TOLERANCE  # a few float16 ulps over 4 steps
    assert_fused_matches(chain_model(nodes, {"x": x, "w": y}), {"x": x, "w": y}, steps=4, tolerance=tolerance)


def test_float_casts_inside_the_chain():
    x = random((3, 50), np.float16, seed=8)
    nodes = [_node("Cast", ["x"], "wide", to=1), _node("Exp", ["wide"], "e"), _node("Cast", ["e"], "d", to=11),
             _node("Sqrt", ["d"], "y")]
    assert_fused_matches(chain_model(nodes, {"x": x}), {"x": x}, steps=4)


def test_integer_comparison_and_where_are_exact():
    x = random((6, 21), np.int32, seed=9)
    nodes = [_node("Greater", ["x", "zero"], "c"), _node("Mul", ["x", "three"], "m"),
             _node("Where", ["c", "x", "m"], "w"), _node("Abs", ["w"], "y")]
    constants = {"zero": np.array(0, np.int32), "three": np.array(3, np.int32)}
    assert_fused_matches(chain_model(nodes, {"x": x}, constants), {"x": x}, steps=4, exact=True)


def test_clip_with_an_absent_min_and_attributes():
    x = random((4, 30), seed=10) * 3
    nodes = [helper.make_node("Clip", ["x", "", "high"], ["c"]), _node("LeakyRelu", ["c"], "l", alpha=0.3),
             _node("HardSigmoid", ["l"], "y", alpha=0.4, beta=0.6)]
    model = chain_model(nodes, {"x": x}, {"high": np.array(1.25, np.float32)})
    assert_fused_matches(model, {"x": x}, steps=3)


def test_disabling_the_pass_keeps_the_nodes():
    x = random((8,))
    model = chain_model([_node("Neg", ["x"], "n"), _node("Exp", ["n"], "y")], {"x": x})
    graph = optimize(model, "cpu", disable=["fuse-elementwise"])
    assert sorted(n.op_type for n in graph.nodes() if not (n.is_input or n.is_constant)) == ["Exp", "Neg"]


def test_a_step_the_loop_cannot_compute_is_reported():
    graph = Graph()
    x = graph.add_input("x", TensorType("float32", (4,)))
    steps = [["Relu", 14, [], [0]], ["Cast", 21, [["to", 6]], [1]]]  # to int32
    node = graph.add_node("FusedElementwise", [x], {"steps": steps, "fused_nodes": ["r", "c"]}, domain=KILN_DOMAIN,
                          outputs=[TensorType("int32", (4,))])
    assert CpuTarget().node_problem(graph, node) == ("kiln::FusedElementwise step 1 (Cast): Cast from float32 to "
                                                     "int32 is not a cast between float16, float32, float64")
