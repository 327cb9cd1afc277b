"""kiln viz: the graph after any pass as DOT, SVG, PNG (Graphviz), HTML or ONNX, with kernel times."""

from __future__ import annotations

import json

import onnx
import pytest

from compiler.cli import EXIT_ERROR, EXIT_OK, main
from compiler.passes.manager import PassError
from compiler.viz import VizError, graph_after, kernel_timings, write_view
from tests.models.builders import mlp_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fused():
    return graph_after(mlp_model(batch=2), "cpu")


def test_graph_after_a_pass_or_before_any():
    imported = graph_after(mlp_model(batch=2), "cpu", "import")
    assert sorted(n.op_type for n in imported.nodes() if not (n.is_input or n.is_constant)) == ["Add", "MatMul", "Relu"]
    before_fusion = graph_after(mlp_model(batch=2), "cpu", "fold-batch-norm")
    assert "FusedMatMul" not in {n.op_type for n in before_fusion.nodes()}
    with pytest.raises(PassError, match="not in the cpu pipeline"):
        graph_after(mlp_model(batch=2), "cpu", "no-such-pass")


def test_dot_shows_fused_members_shapes_and_times(fused, tmp_path):
    kernel = next(n for n in fused.nodes() if n.op_type == "FusedMatMul")
    text = write_view(fused, tmp_path / "g.dot", {kernel.name: 1.5}).read_text()
    assert "fused: matmul, add, relu" in text and "1.500 ms (100.0%)" in text and "float32[2,3]" in text
    assert "const" not in text  # weights are left out of views


@pytest.mark.parametrize("suffix, check", [
    (".svg", lambda data: b"<svg" in data and b"kiln::FusedMatMul" in data),
    (".png", lambda data: data.startswith(PNG_SIGNATURE) and len(data) > 1000),
    (".html", lambda data: b"<svg" in data and b"<td>matmul, add, relu</td>" in data),
])
def test_rendered_views(fused, tmp_path, suffix, check):
    assert check(write_view(fused, tmp_path / f"g{suffix}").read_bytes())


def test_onnx_export_opens_with_fused_ops_in_kiln_domain(fused, tmp_path):
    model = onnx.load(str(write_view(fused, tmp_path / "g.onnx")))
    onnx.checker.check_model(model)
    node = next(n for n in model.graph.node if n.op_type == "FusedMatMul")
    assert node.domain == "kiln" and [(o.domain, o.version) for o in model.opset_import] == [("kiln", 1)]
    epilogue = next(a for a in node.attribute if a.name == "epilogue")
    assert json.loads(epilogue.s)[0][0] == "Add"


def test_kernel_times_come_from_a_bench_profile(fused):
    kernel = next(n for n in fused.nodes() if n.op_type == "FusedMatMul")
    profile = {"profile": {"kernels": [{"nodes": ["matmul", "add", "relu"], "ms": 0.25}]}}
    assert kernel_timings(profile, fused) == {kernel.name: 0.25}
    with pytest.raises(VizError, match="--profile --json"):
        kernel_timings({"latency_ms": {}}, fused)


def test_cli_viz(tmp_path, capsys):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_model(batch=2).SerializeToString())
    assert main(["viz", str(path), "--after", "import", "-o", str(tmp_path / "g.dot")]) == EXIT_OK
    assert "the cpu graph imported" in capsys.readouterr().out
    assert main(["viz", str(path), "-o", str(tmp_path / "g.jpeg")]) == EXIT_ERROR
    assert "the suffix picks the format" in capsys.readouterr().err
