"""precision="fp16" on the gpu target: half storage except what the fp16 check finds overflowing,
which stays float32 and is reported. PoCL reports no cl_khr_fp16, so the compile succeeds, the load
is refused (clearly), and the report says the error was not measured. Half storage itself needs no
extension (ushort bits, float arithmetic), so to check the numerics here the tests drop the
artifact's cl_khr_fp16 demand before loading it."""

import copy
import json

import numpy as np
import onnxruntime as ort
import pytest

import compiler
import runtime
from compiler.artifact import Artifact
from runtime.gpu import OpenCLError
from tests.precision.fp16_models import overflow_model

pytest.importorskip("pyopencl")


def runnable_here(artifact):
    """A copy of the artifact without its cl_khr_fp16 demand (see the module docstring)."""
    manifest = copy.deepcopy(artifact.manifest)
    opencl = manifest["opencl"]
    opencl["extensions"] = [name for name in opencl["extensions"] if name != "cl_khr_fp16"]
    return Artifact(manifest, dict(artifact.files))


def feeds(seed: int = 5) -> dict:
    return {"x": (4 * np.random.default_rng(seed).standard_normal((2, 8))).astype(np.float32)}


def reference(model, x: dict) -> dict:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(["z", "big"], session.run(None, x)))


@pytest.fixture(scope="module")
def checked():
    return compiler.compile(overflow_model(), "gpu", precision="fp16")


def test_overflowing_node_is_kept_float32_and_reported(checked):
    report = json.loads(checked.files["report.json"])
    assert [(entry["node"], entry["op"]) for entry in report["kept_nodes"]] == [("big", "MatMul")]
    assert report["kept_weights"] == [{"weight": "W", "why": "read by 'big', which computes in float32"},
                                      {"weight": "s1", "why": "read only by nodes that compute in float32"},
                                      {"weight": "s2", "why": "read only by nodes that compute in float32"}]
    assert checked.manifest["memory_plan"]["outputs"] == [{"dtype": "float16", "shape": []},
                                                          {"dtype": "float32", "shape": [2, 4]}]
    source = checked.files["model.cl"].decode()
    assert "sum_1.narrow0" in json.dumps(checked.manifest["launches"]) and "__global const ushort*" in source
    x = feeds()
    # x is stored as float16 (the graph input), W = 2e4 is exact in float16; s1, s2 stay float32
    expected = reference(overflow_model(), {"x": x["x"].astype(np.float16).astype(np.float32)})
    assert np.abs(expected["big"]).max() > 65504
    got = runtime.load(runnable_here(checked)).infer(x)
    np.testing.assert_allclose(got["big"], expected["big"], rtol=1e-6)
    np.testing.assert_allclose(got["z"], expected["z"], rtol=1e-3)  # y is narrowed to float16 for ReduceMax


def test_without_the_overflow_on_the_check_data_half_storage_overflows(tmp_path):
    """Calibration data with small inputs finds nothing to keep: on large inputs `big` is inf."""
    np.save(tmp_path / "x.npy", np.full((2, 8), 0.01, np.float32))
    artifact = compiler.compile(overflow_model(), "gpu", precision="fp16", calibration=str(tmp_path))
    assert json.loads(artifact.files["report.json"])["kept_nodes"] == []
    got = runtime.load(runnable_here(artifact)).infer(feeds())
    assert np.isinf(got["big"]).any()


def test_device_without_cl_khr_fp16_is_refused_and_the_report_says_so(checked):
    cl = pytest.importorskip("pyopencl")
    if any("cl_khr_fp16" in device.extensions for platform in cl.get_platforms() for device in platform.get_devices()):
        pytest.skip("an OpenCL device here has cl_khr_fp16")
    error = json.loads(checked.files["report.json"])["output_error"]
    assert "lacks cl_khr_fp16, which this artifact (precision 'fp16') needs" in error["not_measured"]
    with pytest.raises(OpenCLError, match="lacks cl_khr_fp16"):
        runtime.load(checked)
    with pytest.raises(compiler.driver.UnsupportedByTargetError, match="precision 'fp16' needs cl_khr_fp16"):
        compiler.compile(overflow_model(), "gpu", precision="fp16", device=0)
