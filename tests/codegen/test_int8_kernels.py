"""kiln::QuantizedConv / QuantizedMatMul cpu kernels, on every instruction-set path, against an oracle:
onnx.reference's ConvInteger / MatMulInteger for the int32 sums, then the documented float32
requantization written out here in numpy. Results must be bit-identical (to the op's own reference
too) at 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import compiler
import runtime
from compiler.codegen.llvm.kernels.int8_isa import isa_for
from compiler.codegen.llvm.machine import MachineSpec
from compiler.ir.graph import KILN_DOMAIN, Graph, Value
from compiler.ir.types import TensorType
from compiler.ops.quantized_linear import SHIFT, pack_conv_weights, pack_matmul_weights, round_up
from compiler.ops.registry import lookup

# isa -> compile options for a machine that has exactly that path (the host has AVX-512 VNNI)
MACHINES = {
    "avx512vnni": {},
    "avxvnni": {"cpu": "x86-64-v3", "features": "+avx2,+fma,+avxvnni"},
    "avx2": {"cpu": "x86-64-v3", "features": "+avx2,+fma"},
    "portable": {"cpu": "x86-64", "features": "+sse2"},
}
RANGES = {"uint8": (0, 256), "int8": (-128, 128)}
PATHS = list(MACHINES)  # best first


def _skip_unless_runnable(isa: str) -> None:
    """This machine runs an isa's code when its own best path is that one or a later (narrower) one, and it has
    the features the isa's test machine is compiled with (AMD Zen 4 has AVX512-VNNI but not AVX-VNNI)."""
    if PATHS.index(isa_for({})) > PATHS.index(isa):
        pytest.skip(f"this machine cannot run {isa} code (its best int8 path is {isa_for({})})")
    missing = set(filter(None, MACHINES[isa].get("features", "").split(","))) - \
        set(MachineSpec().resolved().features.split(","))
    if missing:
        pytest.skip(f"this machine cannot run {isa} code compiled for {', '.join(sorted(missing))}")


def _integer_oracle(op_type: str, x: np.ndarray, weights: np.ndarray, x_zero_point: int, attrs: dict) -> np.ndarray:
    node = helper.make_node(op_type, ["x", "w", "x_zero_point"], ["y"], **attrs)
    names = ("x", "w", "x_zero_point")
    graph = helper.make_graph([node], "oracle", [helper.make_tensor_value_info(n, 0, None) for n in names],
                              [helper.make_tensor_value_info("y", 0, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    feeds = {"x": x, "w": weights, "x_zero_point": np.array(x_zero_point, x.dtype)}
    return ReferenceEvaluator(model).run(None, feeds)[0].astype(np.int64)


def _requantized(acc: np.ndarray, multiplier: np.ndarray, out: dict) -> np.ndarray:
    """The spec of the epilogue: float32 product, round half to even, zero point, clamp."""
    if out["output_dtype"] == "int32":
        return acc.astype(np.int32)
    scaled = acc.astype(np.int32).astype(np.float32) * multiplier.astype(np.float32)
    if out["output_dtype"] == "float32":
        return np.maximum(scaled, out["low"]) if "low" in out else scaled
    return np.clip(np.rint(scaled) + out["y_zero_point"], out["low"], out["high"]).astype(out["output_dtype"])


def _multipliers(rng, channels: int, depth: int) -> np.ndarray:
    """Scales that spread the sums of `depth` random products over about 60 output steps."""
    return ((0.5 + rng.random(channels)) * 60 / (128 * 74 * np.sqrt(depth))).astype(np.float32)


def _output(dtype: str, rng) -> dict:
    if dtype == "int32":
        return {"output_dtype": "int32"}
    if dtype == "float32":
        return {"output_dtype": "float32", "low": 0.0}
    low, high = RANGES[dtype][0], RANGES[dtype][1] - 1
    return {"output_dtype": dtype, "y_zero_point": int(rng.integers(low, high)), "low": low + 3, "high": high}


def _run(op_type: str, x: np.ndarray, inputs: list[np.ndarray], attrs: dict, machine: dict) -> np.ndarray:
    """cpu results of one fused node (1 and 2 threads identical, equal to the op's own reference)."""
    _skip_unless_runnable(attrs["isa"])
    graph = Graph("int8")
    values = [graph.add_input("x", TensorType(x.dtype.name, x.shape))] + [graph.add_constant(a) for a in inputs]
    node = graph.add_node(op_type, values, attrs, domain=KILN_DOMAIN, outputs=[None])
    opdef = lookup(op_type, KILN_DOMAIN)
    node.outputs[0] = opdef.infer(node, graph.input_types(node), [None] * 4)[0]
    graph.add_output("y", Value(node.name))
    artifact = compiler.compile(graph, target="cpu", **machine)
    single, double = (runtime.load(artifact, num_threads=t).infer({"x": x})["y"] for t in (1, 2))
    np.testing.assert_array_equal(single, double)
    np.testing.assert_array_equal(single, opdef.kernel(node, None, None)([x, *inputs])[0])
    return single


CONV_CASES = {  # (x dtype, C, M, H, W, kernel, stride, pad, dilation, group, output)
    "3x3": ("uint8", 5, 7, 9, 11, 3, 1, 1, 1, 1, "uint8"),
    "1x1_stride2": ("uint8", 16, 13, 9, 10, 1, 2, 0, 1, 1, "uint8"),
    "int8_in_out": ("int8", 6, 9, 8, 8, 3, 1, 1, 1, 1, "int8"),
    "stride2_pad": ("uint8", 3, 8, 15, 13, 7, 2, 3, 1, 1, "uint8"),
    "groups": ("uint8", 8, 12, 7, 9, 3, 1, 1, 1, 2, "uint8"),
    "depthwise": ("uint8", 8, 8, 10, 10, 3, 2, 1, 1, 8, "uint8"),
    "depthwise_multiplier": ("int8", 8, 16, 9, 8, 3, 1, 1, 1, 8, "int8"),
    "depthwise_dilated_float": ("uint8", 6, 6, 11, 13, 5, 2, 3, 2, 6, "float32"),
    "dilated": ("uint8", 4, 5, 12, 12, 3, 1, 2, 2, 1, "uint8"),
    "float_relu": ("uint8", 5, 6, 7, 7, 3, 1, 1, 1, 1, "float32"),
    "int32_sums": ("int8", 7, 5, 6, 9, 3, 2, 1, 1, 1, "int32"),
    "depthwise_int32": ("uint8", 4, 4, 7, 7, 3, 1, 1, 1, 4, "int32"),
    "depthwise_wide_rows": ("int8", 4, 4, 6, 45, 3, 1, 1, 1, 4, "int8"),  # whole vectors, then the row's edge
    "depthwise_wide_stride2": ("uint8", 3, 6, 7, 71, 3, 2, 1, 1, 3, "uint8"),
    "depthwise_stride3": ("uint8", 2, 2, 7, 100, 3, 3, 0, 1, 2, "uint8"),  # the last input column is not read
    "depthwise_9x9": ("uint8", 3, 3, 12, 12, 9, 1, 4, 1, 3, "uint8"),  # too many taps: the GEMM form
    "wide": ("uint8", 64, 70, 14, 14, 3, 1, 1, 1, 1, "uint8"),
    "channel_chunks": ("uint8", 8, 301, 5, 5, 3, 1, 1, 1, 1, "uint8"),  # items split the output channels
}


@pytest.mark.parametrize("isa", MACHINES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_quantized_conv(isa, case):
    dtype, c, m, h, w, k, stride, pad, dilation, group, out = CONV_CASES[case]
    rng = np.random.default_rng(len(case))
    x = rng.integers(*RANGES[dtype], size=(2, c, h, w)).astype(dtype)
    weights = rng.integers(-128, 128, size=(m, c // group, k, k)).astype(np.int8)
    x_zero_point, bias = int(rng.integers(*RANGES[dtype])), rng.integers(-3000, 3000, m)
    conv = {"kernel_shape": [k, k], "strides": [stride] * 2, "pads": [pad] * 4, "dilations": [dilation] * 2,
            "group": group}
    sums = weights.astype(np.int64).reshape(m, -1).sum(axis=1)
    offset = (bias - (x_zero_point + SHIFT[dtype]) * sums).astype(np.int32)
    multiplier = _multipliers(rng, m, weights[0].size)
    output = _output(out, rng)
    attrs = {**conv, **output, "x_zero_point": x_zero_point, "isa": isa, "fused_nodes": ["conv"]}
    got = _run("QuantizedConv", x, [pack_conv_weights(weights), offset, multiplier], attrs, MACHINES[isa])
    acc = _integer_oracle("ConvInteger", x, weights, x_zero_point, conv) + bias.reshape(-1, 1, 1)
    want = _requantized(acc, multiplier.reshape(-1, 1, 1), output)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    if out in RANGES:
        assert len(np.unique(got)) > 20, "the case should not saturate"


MATMUL_CASES = {  # (x dtype, x shape, N, output)
    "odd": ("uint8", (2, 5, 13), 37, "uint8"),
    "int8": ("int8", (7, 30), 19, "int8"),
    "vector": ("uint8", (1, 64), 100, "float32"),
    "int32_sums": ("int8", (3, 2, 21), 18, "int32"),
    "tall": ("uint8", (50, 96), 64, "uint8"),
}


@pytest.mark.parametrize("isa", MACHINES)
@pytest.mark.parametrize("case", MATMUL_CASES)
def test_quantized_matmul(isa, case):
    dtype, shape, n, out = MATMUL_CASES[case]
    rng = np.random.default_rng(len(case) + 100)
    x = rng.integers(*RANGES[dtype], size=shape).astype(dtype)
    weights = rng.integers(-128, 128, size=(shape[-1], n)).astype(np.int8)
    x_zero_point, bias = int(rng.integers(*RANGES[dtype])), rng.integers(-3000, 3000, n)
    padding = round_up(n, 16) - n
    offset = np.pad(bias - (x_zero_point + SHIFT[dtype]) * weights.astype(np.int64).sum(axis=0), (0, padding))
    multiplier = np.pad(_multipliers(rng, n, shape[-1]), (0, padding))
    output = _output(out, rng)
    attrs = {**output, "columns": n, "x_zero_point": x_zero_point, "isa": isa, "fused_nodes": ["matmul"]}
    got = _run("QuantizedMatMul", x, [pack_matmul_weights(weights), offset.astype(np.int32), multiplier], attrs,
               MACHINES[isa])
    acc = _integer_oracle("MatMulInteger", x, weights, x_zero_point, {}) + bias
    want = _requantized(acc, multiplier[:n], output)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("isa, options", [(isa, options) for isa, options in MACHINES.items() if options])
def test_isa_follows_the_machine(isa, options):
    assert isa_for(options) == isa
    assert isa_for({"triple": "aarch64-unknown-linux-gnu"}) == "portable"


@pytest.mark.parametrize("dtype, relu, b_shape", [("uint8", True, (2, 5, 9, 7)), ("int8", False, (2, 5, 9, 7)),
                                                   ("uint8", False, (1, 9, 7))])
def test_quantized_add(dtype, relu, b_shape):
    """Against the unfused steps written out: DequantizeLinear twice, Add, [Relu], QuantizeLinear (float32)."""
    rng = np.random.default_rng(3)
    a, b = (rng.integers(*RANGES[dtype], size=shape).astype(dtype) for shape in ((2, 5, 9, 7), b_shape))
    low, high = RANGES[dtype][0], RANGES[dtype][1] - 1
    attrs = {"a_scale": 0.0371, "a_zero_point": 3, "b_scale": 0.052, "b_zero_point": -7 if dtype == "int8" else 140,
             "y_scale": 0.061, "y_zero_point": 20, "low": max(low, 20) if relu else low, "high": high,
             "output_dtype": dtype, "fused_nodes": ["add"]}
    graph = Graph("add")
    values = [graph.add_input(name, TensorType(dtype, value.shape)) for name, value in (("a", a), ("b", b))]
    node = graph.add_node("QuantizedAdd", values, attrs, domain=KILN_DOMAIN, outputs=[TensorType(dtype, a.shape)])
    graph.add_output("y", Value(node.name))
    artifact = compiler.compile(graph, target="cpu")
    got = runtime.load(artifact, num_threads=2).infer({"a": a, "b": b})["y"]

    def dequantized(x, name):
        return (x.astype(np.float32) - np.float32(attrs[f"{name}_zero_point"])) * np.float32(attrs[f"{name}_scale"])

    total = dequantized(a, "a") + dequantized(b, "b")
    total = np.maximum(total, np.float32(0)) if relu else total
    want = np.clip(np.rint(total / np.float32(attrs["y_scale"])) + attrs["y_zero_point"], low, high).astype(dtype)
    np.testing.assert_array_equal(got, want)


def test_every_int8_tile_reads_inside_the_padded_columns():
    """The last column block of a QuantizedMatMul reads a whole tile of weights, offsets and multipliers:
    their padding must cover the widest tile (a 1000-column classifier read 16 columns past its arrays)."""
    from compiler.codegen.llvm.kernels.int8_isa import ISAS
    from compiler.ops.quantized_linear import VECTOR_COLUMNS

    assert all(VECTOR_COLUMNS % isa.columns == 0 for isa in ISAS.values())
