"""Performance hints: exact stream and thread counts, requests spread over streams, results equal to
the latency setup, and kiln bench --hint throughput (no timing thresholds)."""

from __future__ import annotations

import numpy as np
import pytest

import compiler
import runtime
from compiler.cli import EXIT_OK, main
from runtime.benchmark import throughput_benchmark
from runtime.hints import plan_streams
from tests.models.builders import mlp_model


@pytest.mark.parametrize("hint, streams, threads, cores, expected", [
    (None, None, None, 8, (1, 8)), ("latency", None, 2, 8, (1, 2)), ("throughput", None, None, 8, (8, 1)),
    ("throughput", None, 2, 8, (4, 2)), ("throughput", 3, None, 8, (3, 2)), ("latency", 2, None, 1, (2, 1)),
])
def test_plan_streams(hint, streams, threads, cores, expected):
    assert plan_streams(hint, streams, threads, cores) == expected


@pytest.mark.parametrize("arguments, message", [(("fast", None, None), "use one of latency, throughput"),
                                                (("throughput", 0, None), "num_streams must be 1 or more")])
def test_bad_hints(arguments, message):
    with pytest.raises(ValueError, match=message):
        plan_streams(*arguments)


@pytest.fixture(scope="module")
def artifact():
    return compiler.compile(mlp_model(batch=8), target="cpu")


def test_throughput_streams_each_have_their_own_threads(artifact):
    model = runtime.load(artifact, performance_hint="throughput", num_streams=2, num_threads=1)
    assert (model.num_streams, model.num_threads) == (2, 1)
    assert [e.library.kiln_get_num_threads() for e in model._executors] == [1, 1]
    requests = [model.create_infer_request() for _ in range(4)]
    assert [r.stream for r in requests] == [0, 1, 0, 1]
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    expected = runtime.load(artifact, num_threads=2).infer({"x": x})["y"]
    assert all(np.array_equal(r.infer({"x": x})["y"], expected) for r in requests)
    result = throughput_benchmark(model, {"x": x}, iterations=20)
    assert len(result.latencies) == 20 and result.throughput > 0
    model.close()


def test_bench_hint_throughput(artifact, tmp_path, capsys):
    path = artifact.save(tmp_path / "mlp.kiln")
    assert main(["bench", str(path), "--hint", "throughput", "--streams", "2", "--threads", "1", "-n", "10",
                 "-q"]) == EXIT_OK
    assert "2 streams x 1 thread(s)" in capsys.readouterr().out
