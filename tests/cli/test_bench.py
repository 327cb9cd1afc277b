"""kiln bench: latency statistics, throughput, progress output and the per-kernel profile (no timing thresholds)."""

import io
import json
import re

import numpy as np
import onnx
import pytest

import compiler
import runtime
from compiler.cli import EXIT_ERROR, EXIT_OK, main
from runtime.benchmark import Progress, kernel_flops
from tests.models.builders import mlp_model

MLP_NODES = {"matmul", "add", "relu"}
# rank, ms, share, cumulative share, GFLOP/s (blank for ops other than Conv/Gemm/MatMul), op, kernel, nodes, shapes
PROFILE_ROW = re.compile(r"\s+(?P<rank>\d+)\s+(?P<ms>[0-9.]+)\s+[0-9.]+%\s+[0-9.]+%\s+(?:[0-9.]+\s+)?(?P<op>\S+)"
                         r"\s+(?P<kernel>kiln_k\S+)\s+(?P<nodes>.+?)  \((?P<shapes>.*)\)$")


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "mlp.onnx"
    onnx.save(mlp_model(), path)  # symbolic batch: bench must be given --shape
    return str(path)


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory):
    """Unfused, so the profile has one kernel per node (MatMul, Add, Relu)."""
    artifact = compiler.compile(mlp_model(batch=2), target="cpu",
                                disable=["fuse-epilogues", "pack-gemm-weights", "fuse-elementwise"])
    return str(artifact.save(tmp_path_factory.mktemp("bench") / "mlp.kiln"))


def test_bench_onnx_with_shape_and_profile(mlp_onnx, capsys):
    assert main(["bench", mlp_onnx, "--shape", "x=3,4", "-n", "5", "--profile", "--top", "0", "-q"]) == EXIT_OK
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: no progress
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"kiln bench {mlp_onnx}: target cpu")
    assert "measured: 5 inferences" in captured.out
    latency_line = next(line for line in lines if line.startswith("latency: "))
    latency = dict(re.findall(r"(median|p90|min|max|mean) ([0-9.]+) ms", latency_line))
    assert float(latency["min"]) <= float(latency["median"]) <= float(latency["p90"]) <= float(latency["max"])
    assert float(re.search(r"throughput: ([0-9.]+) inferences/s", captured.out).group(1)) > 0
    rows = [PROFILE_ROW.match(line) for line in lines if PROFILE_ROW.match(line)]
    assert [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))
    assert all(float(row["ms"]) >= 0 and "->" in row["shapes"] for row in rows)
    assert {name for row in rows for name in row["nodes"].split(", ")} == MLP_NODES
    assert lines[-1].startswith("by op type: ")


def test_bench_json_lists_every_kernel_with_node_names(mlp_artifact, capsys):
    assert main(["bench", mlp_artifact, "-n", "4", "--warmup", "2", "--profile", "--top", "0", "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["target"] == "cpu" and report["iterations"] == 4 and len(report["warmup_ms"]) == 2
    assert report["throughput_per_second"] > 0
    manifest_kernels = runtime.load(mlp_artifact).manifest["kernels"]
    kernels = report["profile"]["kernels"]
    assert report["profile"]["total_kernels"] == len(kernels) == len(manifest_kernels)
    assert sorted(k["symbol"] for k in kernels) == sorted(k["symbol"] for k in manifest_kernels)
    assert {name for k in kernels for name in k["nodes"]} == MLP_NODES
    assert all(k["ms"] > 0 for k in kernels) and [k["ms"] for k in kernels] == sorted((k["ms"] for k in kernels),
                                                                                      reverse=True)
    assert sum(k["share"] for k in kernels) == pytest.approx(1.0)
    matmul = next(k for k in kernels if k["op_type"] == "MatMul")  # 2x4 @ 4x3: 48 flops
    assert matmul["gflops_per_second"] == pytest.approx(48 / (matmul["ms"] * 1e-3) * 1e-9)
    assert sum(e["kernels"] for e in report["profile"]["by_op_type"]) == len(kernels)
    assert "bench: 100%" in captured.err  # stderr is not a terminal here: plain progress lines


def test_profile_matches_infer_and_kernel_table(mlp_artifact):
    model = runtime.load(mlp_artifact, num_threads=2)
    x = {"x": np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)}
    outputs, seconds = model.profile(x)
    assert np.array_equal(outputs["y"], model.infer(x)["y"])
    kernels = model.manifest["kernels"]
    assert len(seconds) == len(kernels) and all(s > 0 for s in seconds)
    assert all(k["symbol"].startswith("kiln_k") and k["nodes"] and k["output_shapes"] for k in kernels)


def test_time_limit_top_and_default_target(mlp_artifact, capsys):
    assert main(["bench", mlp_artifact, "-t", "0.2", "--profile", "--top", "1", "-q"]) == EXIT_OK
    out = capsys.readouterr().out
    seconds = float(re.search(r"inferences in ([0-9.]+) s", out).group(1))
    assert seconds >= 0.2 and re.search(r"\(\d+ more kernels", out)


def test_bench_errors_are_one_line(mlp_onnx, mlp_artifact, capsys):
    assert main(["bench", mlp_onnx, "--target", "ref", "--profile", "-n", "1"]) == EXIT_ERROR
    assert "--profile times the kernels of cpu and gpu artifacts" in capsys.readouterr().err
    assert main(["bench", mlp_artifact, "--shape", "x=1,4", "-n", "1"]) == EXIT_ERROR
    assert "--shape applies when compiling an .onnx" in capsys.readouterr().err
    assert main(["bench", mlp_artifact, "-n", "0"]) == EXIT_ERROR
    assert "must be positive" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_and_lines_otherwise():
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(stream)
        for count in range(1, 21):
            progress.update(count / 20, count, count * 0.01)
        progress.close()
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[") and "100%" in drawn and drawn.endswith("\n")
    assert pipe.getvalue().splitlines() == [f"bench: {p}% ({p // 5} inferences, {p * 0.002:.1f} s)"
                                            for p in range(10, 101, 10)]


@pytest.mark.parametrize("weights", [[256, 64, 3, 3], [8, 576, 32]], ids=["plain", "blocked-transposed"])
def test_fused_conv_flops_do_not_depend_on_the_weight_layout(weights):
    kernel = {"op_type": "kiln::FusedConv", "input_shapes": [[1, 64, 13, 13], weights, [256]],
              "output_shapes": [[1, 256, 13, 13]]}
    assert kernel_flops(kernel) == 2 * 256 * 13 * 13 * 64 * 9


def test_blocked_conv_flops_count_the_plain_conv():
    kernel = {"op_type": "kiln::BlockedConv", "input_shapes": [[1, 4, 13, 13, 16], [4, 4, 3, 3, 16, 64], [256]],
              "output_shapes": [[1, 16, 13, 13, 16]]}
    assert kernel_flops(kernel) == 2 * 256 * 13 * 13 * 64 * 9
