"""cpu QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, QLinearMatMul,
ConvInteger and QLinearConv kernels against the ref target (bit-exact) and ONNX Runtime; at 1 and
2 threads. Scales and zero points are fed both as constants and as graph inputs (run-time values).
"""

import numpy as np
import onnxruntime
import pytest
from onnx import helper, numpy_helper

import compiler
import runtime
from compiler.driver import UnsupportedByTargetError
from tests.codegen.kernel_harness import assert_cpu_matches_ref, run_cpu

RNG = np.random.default_rng(7)


def model_of(op_type: str, operands: list, attrs: dict | None = None, outputs=("y",), opset: int = 21):
    """One `op_type` node; operands are (name, array, fed) with fed False for an initializer,
    or None for an absent optional input."""
    names = [operand[0] if operand else "" for operand in operands]
    present = [(name, np.asarray(value), fed) for name, value, fed in filter(None, operands)]
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
              for name, value, fed in present if fed]
    initializers = [numpy_helper.from_array(value, name) for name, value, fed in present if not fed]
    node = helper.make_node(op_type, names, list(outputs), **(attrs or {}))
    graph = helper.make_graph([node], op_type.lower(), inputs, [helper.make_value_info(n, helper.TypeProto())
                                                                for n in outputs], initializer=initializers)
    feeds = {name: value for name, value, fed in present if fed}
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), feeds


def check(model_and_feeds, onnxruntime_too: bool = True) -> None:
    model, feeds = model_and_feeds
    actual = assert_cpu_matches_ref(model, feeds, exact=True)
    if onnxruntime_too:
        expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)
        for name, want in zip([output.name for output in model.graph.output], expected):
            np.testing.assert_array_equal(actual[name], want, err_msg=f"{name} vs onnxruntime")


def integers(shape, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def floats(shape, scale: float = 100.0, dtype=np.float32) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(dtype)


# ----- QuantizeLinear / DequantizeLinear ----------------------------------------------------------

# (x shape, scale shape, attributes)
LAYOUTS = [
    ((2, 3, 4, 5), (), {}),
    ((2, 3, 4, 5), (1,), {}),
    ((2, 3, 4, 5), (3,), {}),  # per axis (default axis 1)
    ((2, 3, 4, 5), (5,), {"axis": -1}),
    ((6, 7), (6,), {"axis": 0}),
    ((3, 8), (3, 2), {"axis": 1, "block_size": 4}),  # blocked
    ((6, 5, 2), (2, 5, 2), {"axis": 0, "block_size": 3}),
    ((2, 4, 3), (2, 1, 3), {"axis": 1, "block_size": 8}),  # one block longer than the axis
]
QUANTIZED = [np.uint8, np.int8, np.uint16, np.int16]


@pytest.mark.parametrize("fed", [False, True])
@pytest.mark.parametrize("dtype", QUANTIZED)
@pytest.mark.parametrize("x_shape, scale_shape, attrs", LAYOUTS)
def test_quantize_linear(x_shape, scale_shape, attrs, dtype, fed):
    scale = RNG.uniform(0.05, 2.0, size=scale_shape).astype(np.float32)
    zero_point = integers(scale_shape, dtype) // 2
    x = floats(x_shape, scale=np.iinfo(dtype).max / 4)
    check(model_of("QuantizeLinear", [("x", x, True), ("scale", scale, fed), ("zero_point", zero_point, fed)], attrs))


def test_quantize_linear_rounds_half_to_even_and_saturates():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1e9, -1e9, 300, -300, 127.5, -128.5], np.float32)
    for dtype in QUANTIZED:
        zero_point = np.array(1 if np.iinfo(dtype).min == 0 else -1, dtype)
        check(model_of("QuantizeLinear", [("x", x, True), ("scale", np.float32(1), False),
                                          ("zero_point", zero_point, False)]))


def test_quantize_linear_defaults_and_output_dtype():
    x = floats((4, 6))
    check(model_of("QuantizeLinear", [("x", x, True), ("scale", np.float32(0.7), True)], opset=13))
    check(model_of("QuantizeLinear", [("x", x, True), ("scale", np.full((4, 3), 0.9, np.float32), False)],
                   {"axis": 1, "block_size": 2, "output_dtype": 5}))  # int16, symmetric
    half = floats((3, 5), scale=30, dtype=np.float16)  # x / scale rounds to float16 (ONNX Runtime keeps float32)
    check(model_of("QuantizeLinear", [("x", half, True), ("scale", np.array([0.3, 0.5, 0.25], np.float16), False),
                                      ("zero_point", np.array([3, 0, 250], np.uint8), False)], {"axis": 0}),
          onnxruntime_too=False)


@pytest.mark.parametrize("fed", [False, True])
@pytest.mark.parametrize("dtype", [*QUANTIZED, np.int32])
@pytest.mark.parametrize("x_shape, scale_shape, attrs", LAYOUTS)
def test_dequantize_linear(x_shape, scale_shape, attrs, dtype, fed):
    x = integers(x_shape, dtype) if dtype != np.int32 else RNG.integers(-1 << 20, 1 << 20, x_shape).astype(dtype)
    scale = RNG.uniform(0.05, 2.0, size=scale_shape).astype(np.float32)
    zero_point = integers(scale_shape, dtype) // 2 if dtype != np.int32 else np.zeros(scale_shape, dtype)
    check(model_of("DequantizeLinear", [("x", x, True), ("scale", scale, fed), ("zero_point", zero_point, fed)], attrs))


def test_dequantize_linear_float16_scale_and_no_zero_point():
    x = integers((3, 4), np.int8)
    check(model_of("DequantizeLinear", [("x", x, True), ("scale", np.array([0.5, 0.1, 3.0], np.float16), True)],
                   {"axis": 0}))
    check(model_of("DequantizeLinear", [("x", x, True), ("scale", np.float32(0.25), False)], opset=19))


def test_blocks_that_do_not_divide_the_axis_are_refused():
    model, _ = model_of("QuantizeLinear", [("x", floats((2, 6)), True), ("scale", np.ones((2, 2), np.float32), False)],
                        {"axis": 1, "block_size": 4})
    with pytest.raises(UnsupportedByTargetError, match="partial last block"):
        compiler.compile(model, target="cpu")


NARROW = {"int4": 22, "uint4": 21, "int2": 26, "uint2": 25, "float8e4m3fn": 17, "float8e4m3fnuz": 18,
          "float8e5m2": 19, "float8e5m2fnuz": 20, "float4e2m1": 23}


def assert_same_bits(model, feeds: dict) -> dict:
    """cpu at 1 and 2 threads and the ref target agree bit for bit (NaNs of narrow floats compare unequal)."""
    results = [runtime.load(compiler.compile(model, target="ref")).infer(feeds)]
    artifact = compiler.compile(model, target="cpu")
    results += [runtime.load(artifact, num_threads=threads).infer(feeds) for threads in (1, 2)]
    for name, want in results[0].items():
        for got in results[1:]:
            assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
            np.testing.assert_array_equal(got[name].view(np.uint8), want.view(np.uint8), err_msg=name)
    return results[1]


@pytest.mark.parametrize("dtype, saturate", [(dtype, 1) for dtype in NARROW] +
                         [(dtype, 0) for dtype in NARROW if dtype.startswith("float8")])  # saturate: float8 only
def test_narrow_quantized_types(dtype, saturate):
    """Quantize to the narrow types, then dequantize their values back."""
    extremes = [1e6, -1e6, np.inf, -np.inf] if dtype.startswith("float") else [1e6, -1e6, 40, -40]
    x = np.concatenate([floats((3, 6), scale=3), [[*extremes, 0.25, -7.5]]]).astype(np.float32)
    scale = np.array([0.5, 0.25, 1.0, 0.75], np.float32)
    model, feeds = model_of("QuantizeLinear", [("x", x, True), ("scale", scale, False)],
                            {"axis": 0, "output_dtype": NARROW[dtype], "saturate": saturate}, opset=25)
    quantized = assert_same_bits(model, feeds)["y"]
    assert_same_bits(*model_of("DequantizeLinear", [("q", quantized, True), ("scale", scale, True)], {"axis": 0},
                               opset=25))


@pytest.mark.parametrize("x", [floats((3, 50)), np.abs(floats((17,))), -np.abs(floats((2, 9))),
                               np.zeros((5,), np.float32), np.linspace(-1, 3, 1000, dtype=np.float32)])
def test_dynamic_quantize_linear(x):
    check(model_of("DynamicQuantizeLinear", [("x", x, True)], outputs=("y", "y_scale", "y_zero_point"), opset=11),
          onnxruntime_too=False)


# ----- integer MatMul and Conv --------------------------------------------------------------------

MATMULS = [((4, 3), (3, 2)), ((17, 37), (37, 300)), ((2, 9, 10), (10, 5)), ((2, 3, 5, 6), (3, 6, 7)),
           ((7,), (7, 3)), ((9, 1), (1, 11))]


@pytest.mark.parametrize("a_dtype, b_dtype", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("a_shape, b_shape", MATMULS)
def test_matmul_integer(a_shape, b_shape, a_dtype, b_dtype):
    a, b = integers(a_shape, a_dtype), integers(b_shape, b_dtype)
    columns = b_shape[-1]
    b_zero = integers((columns,) if len(b_shape) <= 2 else (), b_dtype)  # ONNX Runtime: per column for 2-D B only
    check(model_of("MatMulInteger", [("a", a, True), ("b", b, False), ("a_zero", integers((), a_dtype), True),
                                     ("b_zero", b_zero, False)], opset=10))
    check(model_of("MatMulInteger", [("a", a, True), ("b", b, True)], opset=10))


@pytest.mark.parametrize("dtype, scale_dtype", [(np.uint8, np.float32), (np.int8, np.float32), (np.uint8, np.float16)])
@pytest.mark.parametrize("a_shape, b_shape", MATMULS)
def test_qlinear_matmul(a_shape, b_shape, dtype, scale_dtype):
    a, b = integers(a_shape, dtype), integers(b_shape, dtype)
    columns = b_shape[-1]
    b_scale = RNG.uniform(0.001, 0.01, size=(columns,) if len(b_shape) == 2 else ()).astype(scale_dtype)
    operands = [("a", a, True), ("a_scale", scale_dtype(0.05), True), ("a_zero", integers((), dtype), True),
                ("b", b, False), ("b_scale", b_scale, False), ("b_zero", integers(b_scale.shape, dtype), False),
                ("y_scale", scale_dtype(0.2), False), ("y_zero", integers((), dtype), False)]
    check(model_of("QLinearMatMul", operands), onnxruntime_too=False)


# (input shape, weight shape, attributes)
CONVS = [
    ((1, 1, 3, 3), (1, 1, 2, 2), {}),
    ((2, 3, 9, 11), (8, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 4, 10, 9), (6, 2, 3, 2), {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [2, 0, 1, 1]}),
    ((1, 2, 7, 40), (16, 2, 5, 3), {"strides": [3, 2], "pads": [2, 1, 2, 1]}),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 600), (5, 3, 4), {"pads": [2, 1], "dilations": [3]}),  # 1-D, several column tiles
    ((1, 2, 4, 5, 6), (3, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 1, 1], "strides": [2, 1, 2]}),  # 3-D
    ((1, 16, 5, 5), (16, 16, 1, 1), {}),
]


@pytest.mark.parametrize("x_dtype, w_dtype", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("x_shape, w_shape, attrs", CONVS)
def test_conv_integer(x_shape, w_shape, attrs, x_dtype, w_dtype):
    x, w = integers(x_shape, x_dtype), integers(w_shape, w_dtype)
    check(model_of("ConvInteger", [("x", x, True), ("w", w, False), ("x_zero", integers((), x_dtype), True),
                                   ("w_zero", integers((), w_dtype), False)], attrs, opset=10))
    check(model_of("ConvInteger", [("x", x, True), ("w", w, False)], attrs, opset=10))
    if len(x_shape) == 4:  # per-channel zero points: onnx.reference gets only 2-D convs right, ONNX Runtime none
        check(model_of("ConvInteger", [("x", x, True), ("w", w, False), ("x_zero", integers((), x_dtype), False),
                                       ("w_zero", integers((w_shape[0],), w_dtype), True)], attrs, opset=10),
              onnxruntime_too=False)


def qlinear_conv(x_shape, w_shape, attrs, dtype, per_channel: bool):
    x, w = integers(x_shape, dtype), integers(w_shape, dtype)
    channels = w_shape[0]
    w_scale = RNG.uniform(0.001, 0.004, size=(channels,) if per_channel else ()).astype(np.float32)
    bias = RNG.integers(-5000, 5000, size=(channels,)).astype(np.int32)
    operands = [("x", x, True), ("x_scale", np.float32(0.05), True), ("x_zero", integers((), dtype), True),
                ("w", w, False), ("w_scale", w_scale, False), ("w_zero", np.zeros(w_scale.shape, dtype), False),
                ("y_scale", np.float32(0.3), False), ("y_zero", integers((), dtype), False), ("bias", bias, False)]
    return model_of("QLinearConv", operands, attrs, opset=10)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("x_shape, w_shape, attrs", CONVS)
def test_qlinear_conv(x_shape, w_shape, attrs, dtype):
    """onnx.reference applies per-channel scales to 2-D convs only."""
    check(qlinear_conv(x_shape, w_shape, attrs, dtype, per_channel=len(x_shape) == 4), onnxruntime_too=False)


@pytest.mark.parametrize("x_shape, w_shape, attrs", CONVS)
def test_qlinear_conv_agrees_with_onnxruntime_within_one_step(x_shape, w_shape, attrs):
    """ONNX Runtime requantizes in float32, onnx.reference (and Kiln) in float64: a sum that lands
    next to a rounding tie may differ by one quantization step."""
    model, feeds = qlinear_conv(x_shape, w_shape, attrs, np.uint8, per_channel=True)
    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    assert np.abs(run_cpu(model, feeds)["y"].astype(int) - expected).max() <= 1


def test_per_row_zero_points_are_refused():
    operands = [("a", np.zeros((2, 3), np.uint8), True), ("b", np.zeros((3, 2), np.uint8), False),
                ("a_zero", np.zeros((2,), np.uint8), False)]
    with pytest.raises(UnsupportedByTargetError, match=r"input zero point of shape \[2\]"):
        compiler.compile(model_of("MatMulInteger", operands, opset=10)[0], target="cpu")
