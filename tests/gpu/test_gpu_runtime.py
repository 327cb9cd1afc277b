"""gpu artifacts through the runtime: device choice, the program cache, build failures, precision,
input validation, requests and the async queue, the artifact's plans, `kiln check`."""

import logging
import subprocess
import sys

import numpy as np
import onnx
import pytest

import compiler
import runtime
from compiler.cli import EXIT_OK, EXIT_UNSUPPORTED, main
from compiler.driver import UnsupportedByTargetError
from runtime import InputError
from runtime.gpu import OpenCLError, import_pyopencl, select_device
from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random

CACHE_LOG = "kiln.runtime.gpu"


def add_relu_model():
    return nodes_model([("Add", ["a", "b"], {}), ("Relu", ["a"], {})], {"a": random((4, 33)), "b": random((33,))})


def feeds(seed=0):
    return {"a": random((4, 33), seed=seed), "b": random((33,), seed=seed + 1)}


@pytest.fixture(scope="module")
def artifact():
    return compiler.compile(add_relu_model(), target="gpu")


def test_runtime_imports_pyopencl_only_for_gpu_artifacts():
    code = "import sys, runtime, runtime.gpu; assert 'pyopencl' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_device_selection_by_index_name_and_environment(monkeypatch):
    cl = import_pyopencl()
    first = select_device(cl)
    assert select_device(cl, 0) == first and select_device(cl, "0:0") == first
    assert select_device(cl, first.name.strip()[:6].upper()) == first  # a part of the name, any case
    monkeypatch.setenv("KILN_OPENCL_DEVICE", "0")
    assert select_device(cl) == first
    with pytest.raises(OpenCLError, match=r"no OpenCL device matches 'no such device'; devices: 0 \(0:0\)"):
        select_device(cl, "no such device")
    monkeypatch.setenv("KILN_OPENCL_DEVICE", "99")
    with pytest.raises(OpenCLError, match="no OpenCL device matches '99'"):
        runtime.load(compiler.compile(add_relu_model(), target="gpu"))


def test_program_cache_hit_and_miss_name_the_changed_field(tmp_path, monkeypatch, caplog):
    artifact = compiler.compile(add_relu_model(), target="gpu")
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    caplog.set_level(logging.INFO, CACHE_LOG)
    runtime.load(artifact)
    assert "cache miss (no cached programs" in caplog.text
    assert len(list((tmp_path / "opencl").glob("*.bin"))) == 1
    caplog.clear()
    runtime.load(artifact).infer(feeds())
    assert "cache miss" not in caplog.text
    artifact.manifest["opencl"]["build_options"] += " -cl-denorms-are-zero"
    runtime.load(artifact)
    assert "build_options changed to '-cl-std=CL1.2 -cl-denorms-are-zero'" in caplog.text
    caplog.clear()
    artifact.files["model.cl"] += b"\n// another source\n"
    runtime.load(artifact)
    assert "cache miss (source_sha256 changed)" in caplog.text


def test_build_failure_names_the_kernel_its_node_and_shows_the_log():
    artifact = compiler.compile(add_relu_model(), target="gpu")
    source = artifact.files["model.cl"].decode()
    artifact.files["model.cl"] = source.replace("y[i] = (v0 < 0.0f", "y[i] = (undefined_symbol < 0.0f").encode()
    with pytest.raises(OpenCLError, match=r"(?s)in kernel 'k1_relu' \(node 'Relu_1'\).*Build log:.*undefined_symbol"):
        runtime.load(artifact)


def test_inputs_are_validated_like_cpu(artifact):
    model = runtime.load(artifact)
    with pytest.raises(InputError, match="dtype float64"):
        model.infer({"a": np.zeros((4, 33)), "b": np.zeros(33, np.float32)})
    with pytest.raises(InputError, match="axis 1 must be 33"):
        model.infer({"a": np.zeros((4, 32), np.float32), "b": np.zeros(33, np.float32)})


def test_requests_and_async_queue_match_infer(artifact):
    model = runtime.load(artifact)
    expected = [model.infer(feeds(seed)) for seed in range(6)]
    request = model.create_infer_request()
    request.start_async(feeds(3))
    np.testing.assert_array_equal(request.wait()["Add_0"], expected[3]["Add_0"])
    queue, results = model.create_async_queue(jobs=3), {}
    queue.set_callback(lambda finished, seed: results.__setitem__(seed, finished.results))
    for seed in range(6):
        queue.start_async(feeds(seed), seed)
    queue.wait_all()
    for seed in range(6):
        for name in ("Add_0", "Relu_1"):
            np.testing.assert_array_equal(results[seed][name], expected[seed][name])


def test_artifact_is_deterministic_and_holds_its_plans(artifact, tmp_path):
    first = artifact.save(tmp_path / "a.kiln")
    second = compiler.compile(add_relu_model(), target="gpu").save(tmp_path / "b.kiln")
    for path in sorted(first.iterdir()):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    launches = artifact.manifest["launches"]
    assert [step["kernel"] for step in launches] == ["k0_add", "k1_relu"]
    assert launches[0]["args"] == [{"buffer": "input", "index": 0, "offset": 0},
                                   {"buffer": "input", "index": 1, "offset": 0},
                                   {"buffer": "output", "index": 0, "offset": 0}]
    assert all(len(step["global"]) == len(step["local"]) for step in launches)
    assert artifact.manifest["memory_plan"]["outputs"] == [{"dtype": "float32", "shape": [4, 33]}] * 2
    assert runtime.load(first).infer(feeds())["Relu_1"].shape == (4, 33)


def test_float16_precision_needs_cl_khr_fp16():
    """PoCL here has no cl_khr_fp16: the compile succeeds (it may run elsewhere), the load says why
    it cannot run; naming the device at compile time refuses at once. (Half storage itself is ushort
    bits, which any device can hold: float16 model tensors need no option, see test_half_floats.py.)"""
    artifact = compiler.compile(add_relu_model(), target="gpu", precision="float16")
    assert "__global const ushort*" in artifact.files["model.cl"].decode()
    assert artifact.manifest["opencl"]["extensions"] == ["cl_khr_fp16"]
    assert artifact.manifest["inputs"][0]["type"]["tensor"] == "float32"  # the signature is the model's
    cl = import_pyopencl()
    if "cl_khr_fp16" in select_device(cl).extensions:
        pytest.skip("this OpenCL device has cl_khr_fp16")
    with pytest.raises(OpenCLError, match="lacks cl_khr_fp16, which this artifact \\(precision 'float16'\\) needs"):
        runtime.load(artifact)
    with pytest.raises(UnsupportedByTargetError, match="precision 'float16' needs cl_khr_fp16"):
        compiler.compile(add_relu_model(), target="gpu", precision="float16", device=0)
    with pytest.raises(UnsupportedByTargetError, match="precision 'double' is not one of"):
        compiler.compile(add_relu_model(), target="gpu", precision="double")


def test_small_network_matches_ref():
    """Conv -> BatchNormalization (folded) -> Relu (fused) -> MaxPool -> Flatten (a view) -> Gemm -> Softmax."""
    rng = np.random.default_rng(0)
    constants = {"w": random((8, 3, 3, 3), seed=1), "scale": random((8,), seed=2), "bias": random((8,), seed=3),
                 "mean": random((8,), seed=4), "var": rng.uniform(0.5, 2, 8).astype(np.float32),
                 "fc": random((8 * 4 * 4, 10), seed=5), "fc_bias": random((10,), seed=6)}
    x = random((2, 3, 8, 8))
    nodes = [onnx.helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             onnx.helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["n"]),
             onnx.helper.make_node("Relu", ["n"], ["r"]),
             onnx.helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             onnx.helper.make_node("Flatten", ["p"], ["f"]),
             onnx.helper.make_node("Gemm", ["f", "fc", "fc_bias"], ["g"]),
             onnx.helper.make_node("Softmax", ["g"], ["y"])]
    graph = onnx.helper.make_graph(nodes, "net", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                                   [onnx.helper.make_value_info("y", onnx.TypeProto())],
                                   initializer=[onnx.numpy_helper.from_array(v, k) for k, v in constants.items()])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    assert_gpu_matches_ref(model, {"x": x}, tolerance={"rtol": 1e-4, "atol": 1e-6})
    ops = [step["op_type"] for step in compiler.compile(model, target="gpu").manifest["launches"]]
    assert ops == ["kiln::FusedConv", "MaxPool", "Gemm", "Softmax"]  # the Relu runs in the conv kernel


def test_profile_times_each_node_from_opencl_events(artifact, tmp_path, capsys):
    """model.profile on a gpu artifact: outputs as infer(), device seconds per manifest["kernels"] entry
    (each launch points at its entry), and `kiln bench --profile` reports them by node."""
    model = runtime.load(artifact)
    outputs, seconds = model.profile(feeds())
    expected = model.infer(feeds())
    assert all(np.array_equal(outputs[name], expected[name]) for name in expected)
    kernels = artifact.manifest["kernels"]
    assert [k["nodes"] for k in kernels] == [["Add_0"], ["Relu_1"]]
    assert [step["profile"] for step in artifact.manifest["launches"]] == [0, 1]
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    path = artifact.save(tmp_path / "m.kiln")
    assert main(["bench", str(path), "-n", "3", "--profile", "--top", "0", "-q"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Add_0" in out and "Relu_1" in out


def test_kiln_check_lists_what_the_gpu_target_cannot_compile(tmp_path, capsys):
    x = random((3, 8))
    model = nodes_model([("RandomUniformLike", ["x"], {}), ("Relu", ["x"], {})], {"x": x})
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    assert main(["check", str(path), "--target", "gpu"]) == EXIT_UNSUPPORTED
    out = capsys.readouterr().out
    assert "1 node(s) not supported by target gpu" in out and "RandomUniformLike_0 (RandomUniformLike): no gpu kernel for RandomUniformLike" in out
    onnx.save(nodes_model([("Relu", ["x"], {})], {"x": x}), path)
    assert main(["check", str(path), "--target", "gpu"]) == EXIT_OK
