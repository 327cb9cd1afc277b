"""cpu artifacts through the runtime: determinism, threads, requests, async queue, validation."""

import gc
import os

import numpy as np
import pytest
from onnx import TensorProto, helper

import compiler
import runtime
from runtime import InputError
from runtime.artifact_reader import ArtifactError


def elementwise_model():
    """y = sigmoid(relu(a + b)) * a with broadcasting, z = a - b."""
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["r"]),
             helper.make_node("Sigmoid", ["r"], ["g"]), helper.make_node("Mul", ["g", "a"], ["y"]),
             helper.make_node("Sub", ["a", "b"], ["z"])]
    graph = helper.make_graph(nodes, "elementwise", [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 33, 17]),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, [33, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 33, 17]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 33, 17])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def artifact():
    """Unfused, so the plan holds intermediates (fusion would make the chain one kernel)."""
    return compiler.compile(elementwise_model(), target="cpu", disable=["fuse-elementwise"])


def feeds(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((4, 33, 17)).astype(np.float32),
            "b": rng.standard_normal((33, 1)).astype(np.float32)}


def test_matches_ref_and_any_thread_count(artifact):
    expected = runtime.load(compiler.compile(elementwise_model(), target="ref")).infer(feeds())
    results = [runtime.load(artifact, num_threads=n).infer(feeds()) for n in (1, 2, 3)]
    for name in ("y", "z"):
        np.testing.assert_allclose(results[0][name], expected[name], rtol=1e-6, atol=1e-6)
        assert all(np.array_equal(results[0][name], r[name]) for r in results[1:])


def test_same_model_compiles_to_identical_bytes(artifact, tmp_path):
    first = artifact.save(tmp_path / "a.kiln")
    second = compiler.compile(elementwise_model(), target="cpu", disable=["fuse-elementwise"]).save(tmp_path / "b.kiln")
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def test_manifest_reports_the_memory_plan(artifact):
    """Relu and Sigmoid write over their dead inputs, so the chain needs one block."""
    plan = artifact.manifest["memory_plan"]
    assert plan["kernels"] == 5 and plan["workspace_bytes"] == (4 * 33 * 17 * 4 + 63) // 64 * 64


def test_requests_and_async_queue(artifact):
    model = runtime.load(artifact)
    request = model.create_infer_request()
    request.start_async(feeds(1))
    assert np.array_equal(request.wait()["y"], model(feeds(1))["y"])
    queue = model.create_async_queue(jobs=3)
    seen = {}
    queue.set_callback(lambda finished, index: seen.__setitem__(index, finished.results["z"].copy()))
    for index in range(8):
        queue.start_async(feeds(index), userdata=index)
    queue.wait_all()
    assert sorted(seen) == list(range(8))
    for index in range(8):
        assert np.array_equal(seen[index], model.infer(feeds(index))["z"])


def test_non_contiguous_input_is_accepted_and_bad_shapes_refused(artifact):
    model = runtime.load(artifact)
    data = feeds()
    strided = {"a": np.asfortranarray(data["a"]), "b": data["b"]}
    assert np.array_equal(model.infer(strided)["y"], model.infer(data)["y"])
    with pytest.raises(InputError, match="axis 1 must be 33"):
        model.infer({"a": np.zeros((4, 32, 17), np.float32), "b": data["b"]})


def test_manifest_that_disagrees_with_the_library_is_refused(artifact, tmp_path):
    import json

    from runtime import ArtifactError

    path = artifact.save(tmp_path / "m.kiln")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["memory_plan"]["workspace_bytes"] = 64  # would let kernels write past the workspace
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not match the native library"):
        runtime.load(path)


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux /proc")
def test_close_joins_the_worker_threads(artifact, tmp_path):
    path = artifact.save(tmp_path / "m.kiln")
    before = _native_threads()
    with runtime.load(path, num_threads=3) as model:
        expected = model.infer(feeds())
        assert _native_threads() == before + 2
    assert _native_threads() == before
    with pytest.raises(ArtifactError, match="closed"):
        model.infer(feeds())
    model.close()
    reloaded = runtime.load(path, num_threads=3)
    assert all(np.array_equal(reloaded.infer(feeds())[name], expected[name]) for name in expected)
    del reloaded
    gc.collect()
    assert _native_threads() == before


def test_two_live_models_of_one_artifact_keep_their_own_thread_counts(artifact, tmp_path):
    path = artifact.save(tmp_path / "m.kiln")
    single, double = runtime.load(path, num_threads=1), runtime.load(path, num_threads=2)
    assert (single.num_threads, double.num_threads) == (1, 2)
    assert single._executor.library.kiln_get_num_threads() == 1
    assert double._executor.library.kiln_get_num_threads() == 2
