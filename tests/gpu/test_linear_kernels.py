"""gpu MatMul, Gemm and Conv (tiled GEMM template) beside the ref target."""

import numpy as np
import pytest

import compiler
import runtime
from compiler.codegen.opencl.launch import DeviceLimits, GemmTile, LaunchPlanner
from compiler.driver import UnsupportedByTargetError
from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random

TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def test_matmul_shapes():
    """Tiles that fit and overhang, float4 rows and odd rows, batch broadcasting, 1-D operands,
    matrix-vector shapes."""
    shapes = [((5, 7), (7, 3)), ((70, 132), (132, 68)), ((2, 3, 33, 20), (20, 17)), ((3, 1, 8, 16), (1, 4, 16, 12)),
              ((16,), (16, 8)), ((9, 16), (16,)), ((1, 64), (64, 300)), ((300, 64), (64, 2))]
    feeds, nodes = {}, []
    for number, (a, b) in enumerate(shapes):
        feeds[f"a{number}"], feeds[f"b{number}"] = random(a, seed=number), random(b, seed=number + 50)
        nodes.append(("MatMul", [f"a{number}", f"b{number}"], {}))
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, tolerance=TOLERANCE)


def test_gemm_transposes_alpha_beta_and_bias_broadcast():
    feeds, nodes = {}, []
    for ta in (0, 1):
        for tb in (0, 1):
            name = f"{ta}{tb}"
            feeds[f"a{name}"] = random((20, 12) if ta else (12, 20), seed=ta)
            feeds[f"b{name}"] = random((40, 20) if tb else (20, 40), seed=tb + 2)
            nodes.append(("Gemm", [f"a{name}", f"b{name}", "c"], {"transA": ta, "transB": tb, "alpha": 0.5, "beta": 2.0}))
    feeds["c"], feeds["c2"] = random((40,), seed=9), random((12, 1), seed=10)
    nodes += [("Gemm", ["a00", "b00", "c2"], {}), ("Gemm", ["a00", "b00"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds, opset=13), feeds, tolerance=TOLERANCE)


def test_matrix_vector_products_split_k_across_lanes():
    """A few rows (a classifier at batch 1): gemv.cl.j2, B read along k (transB weights) or along n,
    k not a multiple of the lanes, batched rows, a fused bias + Relu epilogue."""
    feeds = {"x": random((1, 2051)), "w": random((1003, 2051), seed=1), "c": random((1003,), seed=2),
             "v": random((4, 37), seed=3), "u": random((37, 300), seed=4), "p": random((3, 2, 70), seed=5),
             "q": random((3, 70, 9), seed=6)}
    nodes = [("Gemm", ["x", "w", "c"], {"transB": 1}), ("Relu", ["Gemm_0"], {}), ("MatMul", ["v", "u"], {}),
             ("MatMul", ["p", "q"], {})]
    model = nodes_model(nodes, feeds, opset=13)
    outputs = [output for output in model.graph.output if output.name != "Gemm_0"]  # the Relu reads it alone
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    assert_gpu_matches_ref(model, feeds, tolerance=TOLERANCE)
    artifact = compiler.compile(model, target="gpu")
    assert artifact.files["model.cl"].decode().count("__local float partial[") == 3
    assert sorted(step["op_type"] for step in artifact.manifest["launches"]) == ["MatMul", "MatMul", "kiln::FusedGemm"]


def test_small_products_take_tiles_that_fill_the_compute_units():
    """Results do not depend on the tile (each output sums along k in order), so a big GPU gets
    smaller tiles for a small product; a 2-unit device keeps the largest."""
    big = LaunchPlanner(DeviceLimits(max_work_group_size=1024, max_work_item_sizes=(1024, 1024, 64),
                                     local_mem_bytes=48 * 1024, compute_units=132))
    small = LaunchPlanner(DeviceLimits(compute_units=2))
    assert small.gemm_tile(512, 49) == GemmTile(16, 16, 2, 2, 16)  # at most 49 columns: 32 x 32 tiles
    assert big.gemm_tile(512, 49) == GemmTile(8, 8, 1, 1, 8)  # 448 groups; 16 x 16 items make 128 < 132
    assert big.gemm_tile(2048, 3136) == GemmTile(16, 16, 4, 4, 16)
    assert big.gemm_tile(64, 64) == GemmTile(16, 16, 1, 1, 16)  # none fills: the most items (16 groups of 256)
    assert big.gemm_tile(128, 256, batch=8) == GemmTile(16, 16, 2, 2, 16)  # 8 x 32 x 32 tiles: 256 groups
    assert small.lanes(512, 128) == 1 and big.lanes(512, 128) == 32 and big.lanes(100_000, 128) == 1
    # a deep sum splits along k so that 32 x 32 tiles fill the units, instead of 8 x 8 ones
    assert big.split_gemm_tile(512, 49, 4608) == (GemmTile(16, 16, 2, 2, 16), 5)
    assert small.split_gemm_tile(512, 49, 4608) == (GemmTile(16, 16, 2, 2, 16), 1)
    assert big.split_gemm_tile(512, 49, 300) == (GemmTile(8, 8, 1, 1, 8), 1)  # too shallow to split


def test_sums_split_along_k_add_up_in_a_second_kernel(monkeypatch):
    """Compiled for a device of 132 compute units, small deep products split their sums (slices in the
    scratch buffer, then gemm_sum.cl.j2 with the epilogue): a fused conv, a batched MatMul."""
    big = DeviceLimits(max_work_group_size=1024, max_work_item_sizes=(1024, 1024, 64), local_mem_bytes=48 * 1024,
                       compute_units=132)
    monkeypatch.setattr("compiler.targets.gpu._device_limits", lambda device: big)
    feeds = {"x": random((1, 96, 7, 7)), "w": random((64, 96, 3, 3), seed=1), "b": random((64,), seed=2),
             "p": random((2, 3, 40, 1100), seed=3), "q": random((1100, 20), seed=4)}
    model = nodes_model([("Conv", ["x", "w", "b"], {"pads": [1, 1, 1, 1]}), ("Relu", ["Conv_0"], {}),
                         ("MatMul", ["p", "q"], {})], feeds)
    outputs = [output for output in model.graph.output if output.name != "Conv_0"]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    artifact = compiler.compile(model, target="gpu", device="132 units")
    kernels = [step["kernel"] for step in artifact.manifest["launches"]]
    assert len(kernels) == 4 and artifact.manifest["memory_plan"]["scratch_bytes"] > 0
    expected = runtime.load(compiler.compile(model, target="ref")).infer(feeds)
    got = runtime.load(artifact).infer(feeds)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, **TOLERANCE)


def test_conv_groups_strides_pads_dilations():
    x2, w2, b2 = random((2, 6, 9, 10)), random((4, 3, 3, 2), seed=1), random((4,), seed=2)
    x1, w1 = random((1, 3, 10), seed=3), random((5, 3, 3), seed=4)
    x3, w3 = random((1, 2, 5, 6, 7), seed=5), random((3, 2, 2, 3, 2), seed=6)
    wd = random((6, 1, 3, 3), seed=7)  # depthwise
    wp = random((8, 6, 1, 1), seed=8)  # pointwise
    feeds = {"x2": x2, "w2": w2, "b2": b2, "x1": x1, "w1": w1, "x3": x3, "w3": w3, "wd": wd, "wp": wp}
    nodes = [("Conv", ["x2", "w2", "b2"], {"group": 2, "strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2]}),
             ("Conv", ["x1", "w1"], {"auto_pad": "SAME_UPPER"}),
             ("Conv", ["x1", "w1"], {"auto_pad": "SAME_LOWER", "strides": [2]}),
             ("Conv", ["x3", "w3"], {"pads": [1, 0, 1, 0, 1, 1], "strides": [1, 2, 1]}),
             ("Conv", ["x2", "wd"], {"group": 6, "pads": [1, 1, 1, 1]}),
             ("Conv", ["x2", "wp"], {})]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, tolerance=TOLERANCE)


def test_integer_matmul_is_reported_not_compiled():
    a, b = random((3, 4), np.int32), random((4, 2), np.int32)
    with pytest.raises(UnsupportedByTargetError, match="MatMul on int32 is not compiled by the gpu target"):
        compiler.compile(nodes_model([("MatMul", ["a", "b"], {})], {"a": a, "b": b}), target="gpu")
