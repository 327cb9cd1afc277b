"""Models compiled for the gpu target (OpenCL on PoCL in CI) and checked against the ref target.

Building an OpenCL program costs PoCL ~0.2 s, so tests put many nodes in one model
(`nodes_model`): one artifact, one build, every node's output compared.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import compiler
import runtime
from tests.codegen.kernel_harness import node_model, random

pytest.importorskip("pyopencl")
__all__ = ["assert_gpu_matches_onnxruntime", "assert_gpu_matches_ref", "node_model", "nodes_model", "random", "run_gpu"]
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def nodes_model(nodes: list[tuple], feeds: dict, constants: dict | None = None, opset: int = 18):
    """A model of independent nodes `(op_type, input names, attrs[, output count])` over graph inputs
    `feeds` and initializers `constants`; node k's outputs are named "<op>_<k>" (":<i>" after the first)."""
    constants = constants or {}
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                    for name, value in feeds.items()]
    onnx_nodes, outputs = [], []
    for number, (op_type, inputs, attrs, *count) in enumerate(nodes):
        names = [f"{op_type}_{number}" + (f":{i}" if i else "") for i in range(count[0] if count else 1)]
        onnx_nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        outputs += names
    initializers = [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()]
    graph = helper.make_graph(onnx_nodes, "nodes", graph_inputs,
                              [helper.make_value_info(name, helper.TypeProto()) for name in outputs],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_gpu(model, feeds: dict, **options) -> dict:
    return runtime.load(compiler.compile(model, target="gpu", **options)).infer(feeds)


def assert_gpu_matches_ref(model, feeds: dict, exact: bool = False, tolerance: dict | None = None) -> dict:
    """gpu results match the ref target's: same dtypes and shapes, values within TOLERANCE (or exactly)."""
    expected = runtime.load(compiler.compile(model, target="ref")).infer(feeds)
    actual = run_gpu(model, feeds)
    for name, want in expected.items():
        assert actual[name].shape == want.shape and actual[name].dtype == want.dtype, \
            f"{name}: {actual[name].dtype}{actual[name].shape} vs {want.dtype}{want.shape}"
        if exact:
            np.testing.assert_array_equal(actual[name], want, err_msg=name)
        else:
            np.testing.assert_allclose(actual[name], want, **(tolerance or TOLERANCE), err_msg=name)
    return actual


def assert_gpu_matches_onnxruntime(model, feeds: dict, tolerance: dict | None = None, **options) -> dict:
    """gpu results match ONNX Runtime's (the oracle where onnx.reference cannot run a case)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    actual = run_gpu(model, feeds, **options)
    for name, want in expected.items():
        assert actual[name].shape == want.shape and actual[name].dtype == want.dtype, \
            f"{name}: {actual[name].dtype}{actual[name].shape} vs {want.dtype}{want.shape}"
        np.testing.assert_allclose(actual[name], want, **(tolerance or TOLERANCE), err_msg=name)
    return actual
