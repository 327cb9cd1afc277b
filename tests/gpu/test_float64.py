"""float64 on the gpu target: double kernels beside the ref target (onnx.reference), the
cl_khr_fp64 pragma and manifest entry, and the refusals on a device without cl_khr_fp64."""

from types import SimpleNamespace

import numpy as np
import pytest

import compiler
import runtime
import runtime.gpu
from compiler.codegen.opencl.launch import DeviceLimits
from compiler.driver import UnsupportedByTargetError
from runtime.gpu import OpenCLError, import_pyopencl, select_device
from tests.gpu.harness import assert_gpu_matches_ref, nodes_model, random


def double_model():
    feeds = {"a": random((3, 5), np.float64), "b": random((5,), np.float64, seed=1)}
    return nodes_model([("Add", ["a", "b"], {})], feeds), feeds


def test_float64_elementwise_reductions_and_casts_match_ref():
    if "cl_khr_fp64" not in select_device(import_pyopencl()).extensions:
        pytest.skip("this OpenCL device has no cl_khr_fp64")
    a, b = random((3, 4, 5), np.float64), random((4, 5), np.float64, seed=1)
    a[0, 0, :3] = [np.nan, 1e300, -1e-300]  # beyond float32's range: computed in double
    feeds = {"a": a, "b": b, "i": random((3, 4, 5), np.int32, seed=2)}
    nodes = [("Add", ["a", "b"], {}), ("Mul", ["a", "a"], {}), ("Div", ["b", "a"], {}), ("Max", ["a", "b"], {}),
             ("Min", ["a", "b"], {}), ("Mod", ["a", "b"], {"fmod": 0}), ("Pow", ["b", "b"], {}),
             ("Sigmoid", ["b"], {}), ("HardSigmoid", ["a"], {}), ("Sign", ["a"], {}), ("Exp", ["b"], {}),
             ("Greater", ["a", "b"], {}), ("Cast", ["a"], {"to": 1}), ("Cast", ["i"], {"to": 11}),
             ("ReduceSum", ["a"], {"keepdims": 0}), ("ReduceMax", ["a"], {"keepdims": 1}),
             ("Softmax", ["b"], {}), ("LogSoftmax", ["b"], {"axis": 0}), ("ArgMax", ["b"], {"axis": 1}),
             ("Transpose", ["a"], {"perm": [2, 0, 1]}), ("Where", ["Greater_11", "a", "b"], {})]
    artifact = compiler.compile(nodes_model(nodes, feeds), target="gpu")
    source = artifact.files["model.cl"].decode()
    assert "#pragma OPENCL EXTENSION cl_khr_fp64 : enable" in source and "__global const double*" in source
    assert artifact.manifest["opencl"]["extensions"] == ["cl_khr_fp64"]
    assert_gpu_matches_ref(nodes_model(nodes, feeds), feeds, tolerance={"rtol": 1e-12, "atol": 1e-300})


def test_float32_programs_need_no_extension():
    model = nodes_model([("Add", ["a", "a"], {})], {"a": random((2, 3))})
    artifact = compiler.compile(model, target="gpu")
    assert "#pragma" not in artifact.files["model.cl"].decode() and artifact.manifest["opencl"]["extensions"] == []


def test_float64_refused_for_a_named_device_without_cl_khr_fp64(monkeypatch):
    monkeypatch.setattr("compiler.targets.gpu._device_limits", lambda device: DeviceLimits(name="no doubles"))
    model, _ = double_model()
    with pytest.raises(UnsupportedByTargetError, match="float64 tensors need cl_khr_fp64, which the device named"):
        compiler.compile(model, target="gpu", device=0)


def test_runtime_refuses_a_device_without_cl_khr_fp64(monkeypatch):
    model, _ = double_model()
    artifact = compiler.compile(model, target="gpu")
    real = runtime.gpu.select_device

    def without_doubles(cl, selector=None):
        device = real(cl, selector)
        extensions = " ".join(e for e in device.extensions.split() if e != "cl_khr_fp64")
        return SimpleNamespace(extensions=extensions, name=device.name, platform=device.platform,
                               max_work_group_size=device.max_work_group_size)

    monkeypatch.setattr(runtime.gpu, "select_device", without_doubles)
    with pytest.raises(OpenCLError, match="lacks cl_khr_fp64, which this artifact needs for its float64 tensors"):
        runtime.load(artifact)
