"""ONNX backend node cases passed by a Kiln target and by ONNX Runtime, in the same run.

    python bench/conformance_report.py [--target ref] [--failures]

Both runtimes see the same models and inputs and are judged by the same comparison
(tests/conformance/outputs.py, with each case's own rtol/atol).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frontends.onnx.backend import get_backend  # noqa: E402
from tests.conformance.outputs import assert_value_matches  # noqa: E402


def _passes(run, case) -> bool:
    try:
        for inputs, expected in case.data_sets:
            outputs = run(case, inputs)
            if len(outputs) != len(expected):
                return False
            for index, (actual, wanted) in enumerate(zip(outputs, expected)):
                assert_value_matches(actual, wanted, case.rtol, case.atol, f"output {index}")
        return True
    except Exception:
        return False


def kiln_runner(target: str):
    backend = get_backend(target)
    return lambda case, inputs: backend.prepare(case.model).run(inputs)


def ort_run(case, inputs):
    import onnxruntime
    from frontends.onnx.backend import as_value

    session = onnxruntime.InferenceSession(case.model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {name: as_value(value) for name, value in zip(names, inputs)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="ref")
    parser.add_argument("--failures", action="store_true", help="list the cases Kiln fails")
    args = parser.parse_args()
    import onnx
    import onnxruntime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        cases = collect_testcases()
        runners = {f"kiln-{args.target}": kiln_runner(args.target), "onnxruntime": ort_run}
        passed = {name: [] for name in runners}
        seconds = {}
        for name, run in runners.items():
            start = time.perf_counter()
            passed[name] = [case.name for case in cases if _passes(run, case)]
            seconds[name] = time.perf_counter() - start
    print(f"ONNX backend node cases (onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}): {len(cases)}")
    for name in runners:
        print(f"  {name:12} passes {len(passed[name]):5d}  ({seconds[name]:.1f} s)")
    if args.failures:
        kiln = set(passed[f"kiln-{args.target}"])
        print("failed by Kiln:", ", ".join(sorted(c.name for c in cases if c.name not in kiln)))


if __name__ == "__main__":
    main()
