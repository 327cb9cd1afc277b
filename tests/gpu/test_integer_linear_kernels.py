"""gpu MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv (integer GEMM template) beside the
ref target (onnx.reference), bit for bit: odd sizes, batch broadcasting, per-channel zero points
and scales, groups, pads, strides, dilations, constant and run-time scales."""

import numpy as np
import pytest

import compiler
from compiler.codegen.opencl.kernels import integer_linear
from compiler.codegen.opencl.kernels.integer_linear import DIVIDE, REQUANTIZE
from compiler.driver import UnsupportedByTargetError
from tests.gpu.harness import assert_gpu_matches_ref, nodes_model


def _bytes(shape, dtype, seed: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=shape).astype(dtype)


def _scale(shape, seed: int, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.001, 0.05, size=shape).astype(dtype)


def test_matmul_integer_signedness_zero_points_and_shapes():
    """Every signedness pair, scalar and per-column zero points, no zero points, rows that are whole
    char4 vectors and odd ones, batch broadcasting, 1-D operands."""
    feeds, nodes = {}, []
    shapes = [((5, 7), (7, 3)), ((70, 132), (132, 68)), ((2, 3, 33, 20), (20, 17)), ((3, 1, 8, 16), (1, 4, 16, 12)),
              ((16,), (16, 8)), ((9, 13), (13,))]
    types = [(np.uint8, np.int8), (np.int8, np.uint8), (np.uint8, np.uint8), (np.int8, np.int8)]
    for number, (a_shape, b_shape) in enumerate(shapes):
        a_type, b_type = types[number % len(types)]
        a, b = f"a{number}", f"b{number}"
        feeds[a], feeds[b] = _bytes(a_shape, a_type, number), _bytes(b_shape, b_type, number + 50)
        feeds[f"za{number}"] = _bytes((), a_type, number + 100)
        columns = b_shape[-1] if len(b_shape) > 1 else 1
        feeds[f"zb{number}"] = _bytes((columns,) if number % 2 else (), b_type, number + 150)
        nodes.append(("MatMulInteger", [a, b, f"za{number}", f"zb{number}"], {}))
        nodes.append(("MatMulInteger", [a, b], {}))
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, exact=True)


def test_qlinear_matmul_run_time_and_constant_scales():
    """Scales as graph inputs (the kernel computes the multiplier) and as initializers (written into
    the kernel): per-tensor and per-column, float32 and float16, uint8 and int8 outputs."""
    a, b = _bytes((2, 19, 24), np.uint8, 1), _bytes((24, 10), np.int8, 2)
    feeds = {"a": a, "b": b, "sa": _scale((), 3), "za": np.uint8(128), "sb": _scale((10,), 4),
             "zb": np.zeros(10, np.int8), "sy": np.float32(0.02), "zy": np.uint8(100), "zy8": np.int8(-5),
             "ha": _scale((), 5, np.float16), "hb": _scale((), 6, np.float16), "hy": np.float16(0.03)}
    constants = {"csa": _scale((), 7), "csb": _scale((10,), 8), "csy": np.float32(0.04), "cza": np.uint8(120),
                 "czy": np.uint8(7), "czb": np.zeros(10, np.int8)}
    nodes = [("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], {}),
             ("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy8"], {}),
             ("QLinearMatMul", ["a", "ha", "za", "b", "hb", "zb", "hy", "zy"], {}),
             ("QLinearMatMul", ["a", "csa", "cza", "b", "csb", "czb", "csy", "czy"], {}),
             ("QLinearMatMul", ["a", "csa", "cza", "b", "sb", "zb", "csy", "czy"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants, opset=21), feeds, exact=True)


def test_conv_integer_groups_pads_strides_dilations():
    x2, w2 = _bytes((2, 6, 9, 10), np.uint8, 1), _bytes((4, 3, 3, 2), np.int8, 2)
    x1, w1 = _bytes((1, 3, 10), np.int8, 3), _bytes((5, 3, 3), np.uint8, 4)
    x3, w3 = _bytes((1, 2, 5, 6, 7), np.uint8, 5), _bytes((3, 2, 2, 3, 2), np.uint8, 6)
    wd = _bytes((6, 1, 3, 3), np.int8, 7)  # depthwise
    feeds = {"x2": x2, "w2": w2, "x1": x1, "w1": w1, "x3": x3, "w3": w3, "wd": wd, "zx": np.uint8(131),
             "zw": _bytes((4,), np.int8, 8), "zx1": np.int8(-3), "zw1": np.uint8(9), "zwd": _bytes((6,), np.int8, 9)}
    nodes = [("ConvInteger", ["x2", "w2", "zx", "zw"], {"group": 2, "strides": [2, 1], "pads": [1, 0, 2, 1],
                                                        "dilations": [1, 2]}),
             ("ConvInteger", ["x1", "w1", "zx1", "zw1"], {"auto_pad": "SAME_UPPER"}),
             ("ConvInteger", ["x1", "w1"], {"auto_pad": "SAME_LOWER", "strides": [2]}),
             ("ConvInteger", ["x3", "w3", "zx"], {"pads": [1, 0, 1, 0, 1, 1], "strides": [1, 2, 1]}),
             ("ConvInteger", ["x2", "wd", "zx", "zwd"], {"group": 6, "pads": [1, 1, 1, 1]})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, exact=True)


def test_qlinear_conv_per_channel_bias_groups():
    """ORT's QDQ layout (uint8 input, int8 per-channel symmetric weights, int32 bias) and the other
    signedness, per-tensor weights, depthwise, strides and pads; constant and run-time scales."""
    x = _bytes((2, 8, 11, 9), np.uint8, 1)
    w, wd = _bytes((12, 4, 3, 3), np.int8, 2), _bytes((8, 1, 3, 3), np.int8, 3)
    feeds = {"x": x, "sx": np.float32(0.02), "zx": np.uint8(120), "sw": _scale((12,), 4),
             "zw": np.zeros(12, np.int8), "sy": np.float32(0.1), "zy": np.uint8(60),
             "bias": _bytes((12,), np.int16, 5).astype(np.int32) * 40,
             "xi": _bytes((1, 8, 7, 7), np.int8, 6), "zxi": np.int8(3), "zyi": np.int8(-10)}
    constants = {"w": w, "wd": wd, "csx": np.float32(0.02), "czx": np.uint8(120), "csw": _scale((12,), 7),
                 "cswd": _scale((8,), 8), "czw": np.zeros(12, np.int8), "czwd": np.zeros(8, np.int8),
                 "csy": np.float32(0.05), "czy": np.uint8(10), "cbias": _bytes((12,), np.int16, 9).astype(np.int32),
                 "sw1": np.float32(0.01), "zw1": np.int8(2)}
    nodes = [("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "bias"],
              {"pads": [1, 1, 1, 1], "group": 2}),
             ("QLinearConv", ["x", "csx", "czx", "w", "csw", "czw", "csy", "czy", "cbias"],
              {"strides": [2, 2], "pads": [0, 1, 2, 0], "group": 2}),
             ("QLinearConv", ["x", "csx", "czx", "wd", "cswd", "czwd", "csy", "czy"],
              {"group": 8, "pads": [1, 1, 1, 1]}),
             ("QLinearConv", ["xi", "sx", "zxi", "w", "sw1", "zw1", "sy", "zyi"], {"group": 2, "dilations": [2, 1]})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, constants), feeds, exact=True)


def test_requantize_rounds_as_float64():
    """kiln_requantize against numpy's rint(float64(total) * float64(multiplier)) + zero point,
    saturated: ties, products past double's 53 bits, tiny and huge multipliers, subnormals, inf."""
    cl = pytest.importorskip("pyopencl")
    rng = np.random.default_rng(0)
    totals = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 4000), rng.integers(-5000, 5000, 4000),
                             [0, 1, -1, 3, -3, 5, 2 ** 31 - 1, -2 ** 31]]).astype(np.int32)
    multipliers = np.concatenate([rng.uniform(0, 1e-6, 3000), rng.uniform(0, 1, 3000),
                                  2.0 ** rng.integers(-40, 30, 2000), [0.5, 0.5, 0.5, 0.5, 0.25, 1e-45, np.inf, 3e38]])
    multipliers = (multipliers * rng.choice([1, 1, 1, -1], multipliers.size)).astype(np.float32)
    zero_point, low, high = 7, -128, 127
    source = REQUANTIZE[1] + DIVIDE[1] + """
__kernel void run(__global const int* t, __global const float* m, __global int* y)
{ const int i = get_global_id(0); y[i] = kiln_requantize(t[i], m[i], %d, %d, %d); }
""" % (zero_point, low, high)
    context = cl.create_some_context(interactive=False)
    queue = cl.CommandQueue(context)
    flags = cl.mem_flags
    t_buffer = cl.Buffer(context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=totals)
    m_buffer = cl.Buffer(context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=multipliers)
    y = np.empty_like(totals)
    y_buffer = cl.Buffer(context, flags.WRITE_ONLY, y.nbytes)
    cl.Program(context, source).build().run(queue, (totals.size,), None, t_buffer, m_buffer, y_buffer)
    cl.enqueue_copy(queue, y, y_buffer)
    with np.errstate(invalid="ignore", over="ignore"):
        product = totals.astype(np.float64) * multipliers.astype(np.float64)
        want = np.where(np.isnan(product), low, np.clip(np.rint(product) + zero_point, low, high)).astype(np.int32)
    np.testing.assert_array_equal(y, want)


def test_many_constant_multipliers_are_computed_in_the_kernel(monkeypatch):
    """Per-channel multipliers of constant scales are written into the kernel, up to
    MAX_WRITTEN_MULTIPLIERS; past it, the kernel reads the constant scales."""
    x = _bytes((1, 6, 5, 5), np.uint8, 1)
    constants = {"sx": np.float32(0.02), "zx": np.uint8(128), "w": _bytes((12, 6, 3, 3), np.int8, 2),
                 "sw": _scale((12,), 3), "zw": np.zeros(12, np.int8), "sy": np.float32(0.05), "zy": np.uint8(9)}
    model = nodes_model([("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"], {"pads": [1, 1, 1, 1]})],
                        {"x": x}, constants)
    assert "_multipliers[" in compiler.compile(model, target="gpu").files["model.cl"].decode()
    monkeypatch.setattr(integer_linear, "MAX_WRITTEN_MULTIPLIERS", 4)
    assert "_multipliers[" not in compiler.compile(model, target="gpu").files["model.cl"].decode()
    assert_gpu_matches_ref(model, {"x": x}, exact=True)


def test_per_row_input_zero_point_is_reported_not_compiled():
    feeds = {"a": _bytes((4, 8), np.uint8, 1), "b": _bytes((8, 3), np.int8, 2), "za": _bytes((4,), np.uint8, 3)}
    with pytest.raises(UnsupportedByTargetError, match=r"MatMulInteger input zero point of shape \[4\] is not "
                                                      r"compiled by the gpu target \(one value\)"):
        compiler.compile(nodes_model([("MatMulInteger", ["a", "b", "za"], {})], feeds), target="gpu")
