"""kiln diff: a wrong kernel planted in a 50-layer model is named first; a correct compile has no mismatch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import EXIT_MISMATCH, EXIT_OK, main
from compiler.diff import diff_model, expose_intermediates
from compiler.driver import optimize
from compiler.passes.manager import PassSpec, register_pass
from compiler.targets.base import get_target

pytest.importorskip("onnxruntime")
LAYERS, WIDTH = 50, 16
PLANTED = "matmul_23"


def deep_mlp():
    """50 layers of MatMul -> Add -> Relu (the cpu target fuses each layer into one kernel)."""
    rng = np.random.default_rng(3)
    nodes, initializers, x = [], [], "x"
    for layer in range(LAYERS):
        weights = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH / 2)).astype(np.float32)
        initializers += [numpy_helper.from_array(weights, f"w_{layer}"),
                         numpy_helper.from_array(rng.uniform(0, 0.1, WIDTH).astype(np.float32), f"b_{layer}")]
        nodes += [helper.make_node("MatMul", [x, f"w_{layer}"], [f"mm_{layer}"], name=f"matmul_{layer}"),
                  helper.make_node("Add", [f"mm_{layer}", f"b_{layer}"], [f"add_{layer}"], name=f"add_{layer}"),
                  helper.make_node("Relu", [f"add_{layer}"], [f"h_{layer}"], name=f"relu_{layer}")]
        x = f"h_{layer}"
    graph = helper.make_graph(nodes, "deep_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, WIDTH])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [4, WIDTH])], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@register_pass("test-perturb-planted-node")
def perturb_planted_node(graph, ctx):
    """Test only: the kernel that computes PLANTED gets its weights scaled by 1.05, a wrong kernel."""
    kernel = next(n for n in graph.nodes() if PLANTED in n.attrs.get("fused_nodes", [n.name]))
    weights = graph.input_values(kernel)[1]
    scaled = graph.add_constant(graph.constant_value(weights) * np.float32(1.05), f"{PLANTED}_wrong_weights")
    graph.set_input(kernel, 1, scaled)
    return graph


def feeds():
    return {"x": np.random.default_rng(0).standard_normal((4, WIDTH)).astype(np.float32)}


def test_a_planted_wrong_kernel_is_named_first():
    pipeline = get_target("cpu").pipeline({}) + [PassSpec("test-perturb-planted-node")]
    report = diff_model(deep_mlp(), "cpu", feeds(), pipeline=pipeline)
    first = report.first_mismatch
    assert first is not None and PLANTED in first.kernel_nodes, first
    assert first.node == "relu_23" and first.max_rel > 1e-3
    earlier = [row for row in report.rows if int(row.node.rsplit("_", 1)[1]) < 23]
    assert earlier and all(row.within_tolerance is not False for row in earlier)


@pytest.mark.parametrize("reference", ["ort", "ref"])
def test_a_correct_compile_has_no_mismatch(reference):
    report = diff_model(deep_mlp(), "cpu", feeds(), reference=reference)
    assert report.first_mismatch is None
    compared = [row for row in report.rows if row.max_abs is not None]
    assert len(compared) == LAYERS  # each fused layer's result; MatMul and Add stay inside the kernel
    assert all(row.note.startswith("computed inside kernel") for row in report.rows if row.max_abs is None)


def test_every_intermediate_becomes_an_output():
    graph = optimize(deep_mlp(), "cpu")
    exposed = expose_intermediates(graph)
    assert len(exposed.outputs) == LAYERS and len(graph.outputs) == 1


def test_cli_diff(tmp_path, capsys):
    path = tmp_path / "deep.onnx"
    path.write_bytes(deep_mlp().SerializeToString())
    assert main(["diff", str(path), "-t", "cpu"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "every compared output is within tolerance" in text and "relu_49" in text
    assert main(["diff", str(path), "-t", "cpu", "--atol", "0", "--rtol", "0", "--json"]) in (EXIT_OK, EXIT_MISMATCH)
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "cpu" and len(report["rows"]) == 3 * LAYERS


def test_the_gpu_target_diffs_the_same_way(tmp_path, monkeypatch):
    pytest.importorskip("pyopencl")
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))  # program binaries: not the user's cache
    report = diff_model(deep_mlp(), "gpu", feeds())
    assert report.first_mismatch is None and sum(row.max_abs is not None for row in report.rows) == LAYERS


def test_the_gna_target_diffs_within_its_quantization_error():
    from tests.gna.models import mlp

    model = mlp()
    x = np.random.default_rng(0).standard_normal((1, 440)).astype(np.float32)
    report = diff_model(model, "gna", {model.graph.input[0].name: x}, rtol=0.05, atol=0.05)
    assert report.first_mismatch is None and sum(row.max_abs is not None for row in report.rows) >= 10
