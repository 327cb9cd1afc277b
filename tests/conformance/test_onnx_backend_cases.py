"""ONNX backend conformance: every node and model case of the installed onnx package, per target.

Cases are generated at test time from onnx (never committed). A case listed in
expected_failures/<target>.txt must fail (strict xfail: the suite fails once it passes, so
the list stays true); every other case must pass. A case whose model holds something the
target reports as unsupported (the same report `kiln check` prints) is skipped with that reason.
A model that does not compile as declared is compiled for each data set's input shapes, with
its shape-setting inputs frozen (see frontends/onnx/backend.py). The gpu target runs a fixed
subset unless KILN_FULL_GPU_CONFORMANCE=1 (see gpu_subset.py).
"""

from __future__ import annotations

import importlib.util
import warnings

import pytest

from compiler.driver import UnsupportedByTargetError
from frontends.onnx.backend import get_backend
from tests.conformance.expected import expected_failures
from tests.conformance.gpu_subset import default_gpu_cases
from tests.conformance.outputs import assert_value_matches

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from onnx.backend.test.case.model import collect_testcases as collect_model_cases
    from onnx.backend.test.case.node import collect_testcases as collect_node_cases

    NODE_CASES = collect_node_cases()
    MODEL_CASES = [case for case in collect_model_cases() if case.model is not None]

TARGETS = ["ref", "cpu", "gpu"]
RANDOM_REASON = "random draws"
OPTIONAL_PACKAGES = {"Pillow": "PIL"}  # a reason naming one holds only where it is not installed


def _holds(reason: str) -> bool:
    """Whether an expected failure's reason holds here (ImageDecoder passes where Pillow is installed)."""
    return not any(name in reason and importlib.util.find_spec(module) is not None
                   for name, module in OPTIONAL_PACKAGES.items())
GPU_CASES = default_gpu_cases(NODE_CASES + MODEL_CASES)  # None: all (see gpu_subset.py)


def _params(cases, target):
    failures = expected_failures(target)
    for case in cases:
        if target == "gpu" and GPU_CASES is not None and case.name not in GPU_CASES:
            continue
        reason = failures.get(case.name)
        reason = reason if reason and _holds(reason) else None
        # Random draws can match the expected output by chance, so they are not held to strict xfail.
        marks = [pytest.mark.xfail(strict=not reason.startswith(RANDOM_REASON), reason=reason)] if reason else []
        yield pytest.param(case, target, id=f"{target}-{case.name}", marks=marks)


def run_case(case, target: str) -> None:
    prepared = get_backend(target).prepare(case.model)
    for number, (inputs, expected_outputs) in enumerate(case.data_sets):
        try:
            outputs = prepared.run(inputs)
        except UnsupportedByTargetError as error:
            pytest.skip(f"not compiled by {target}: {error.unsupported[0].op}: {error.unsupported[0].reason}")
        assert len(outputs) == len(expected_outputs)
        for index, (actual, expected) in enumerate(zip(outputs, expected_outputs)):
            assert_value_matches(actual, expected, case.rtol, case.atol, f"{case.name} data set {number} output {index}")


@pytest.mark.parametrize("case, target", [p for t in TARGETS for p in _params(NODE_CASES, t)])
def test_node_case(case, target):
    run_case(case, target)


@pytest.mark.parametrize("case, target", [p for t in TARGETS for p in _params(MODEL_CASES, t)])
def test_model_case(case, target):
    run_case(case, target)


def test_expected_failures_name_real_cases():
    """A stale name in an expected-failures file is an error, not silently ignored."""
    names = {case.name for case in NODE_CASES + MODEL_CASES}
    for target in TARGETS:
        unknown = sorted(set(expected_failures(target)) - names)
        assert not unknown, f"expected_failures/{target}.txt names cases onnx does not have: {unknown}"
