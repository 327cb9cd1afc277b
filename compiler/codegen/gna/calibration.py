"""Value ranges for quantization: run the float graph through the ref interpreter over samples.

Samples come from calibration data (`calibration=`: an .npz, or a directory of NAME.npy files; each
array is one input tensor or a stack of them along a new leading axis) or, without it, from
computed ranges: seeded standard-normal inputs (the scale ONNX test data and normalized speech
features have). Every value's smallest and largest element over all samples is recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ops.interpreter import Interpreter

SYNTHETIC_SAMPLES = 16


class CalibrationError(ValueError):
    """Calibration data that cannot be used for this model."""


def _stack(name: str, array: np.ndarray, shape: tuple) -> np.ndarray:
    """[samples, *shape] float32 from one sample or a stack of them."""
    array = np.asarray(array)
    if array.shape == shape:
        return array[None].astype(np.float32)
    if array.shape[1:] == shape and len(array):
        return array.astype(np.float32)
    raise CalibrationError(f"calibration input {name!r} has shape {list(array.shape)}; the model takes "
                           f"{list(shape)}: give one sample of that shape or a stack [samples, *shape]")


def load_calibration(path, graph: Graph) -> dict[str, np.ndarray]:
    """Samples per graph input from an .npz file or a directory of NAME.npy files."""
    path = Path(path)
    if path.is_dir():
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in sorted(path.glob("*.npy"))}
    elif path.is_file():
        with np.load(path, allow_pickle=False) as archive:
            arrays = dict(archive)
    else:
        raise CalibrationError(f"calibration data {str(path)!r}: no such .npz file or directory of .npy files")
    missing = [name for name in graph.inputs if name not in arrays]
    if missing:
        raise CalibrationError(f"calibration data {str(path)!r} has no samples for input(s) {missing} "
                               f"(it holds {sorted(arrays)}); name each array after its input")
    stacks = {name: _stack(name, arrays[name], tuple(graph.node(name).outputs[0].shape)) for name in graph.inputs}
    counts = {len(s) for s in stacks.values()}
    if len(counts) != 1:
        raise CalibrationError(f"calibration inputs hold different sample counts {sorted(counts)}; give each input "
                               "the same number of samples")
    return stacks


def synthetic_samples(graph: Graph, count: int = SYNTHETIC_SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((count, *graph.node(name).outputs[0].shape)).astype(np.float32)
            for name in graph.inputs}


def sample_values(graph: Graph, values: list[Value], samples: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[count, *shape] per value: the float graph run over each sample."""
    probe = graph.copy()
    probe.outputs = [(f"probe{i}", value) for i, value in enumerate(values)]
    interpreter = Interpreter(probe)
    runs = [interpreter.run({name: stack[index] for name, stack in samples.items()})
            for index in range(len(next(iter(samples.values()))))]
    return [np.stack([np.asarray(run[i]) for run in runs]) for i in range(len(values))]


def value_ranges(graph: Graph, samples: dict[str, np.ndarray]) -> dict[Value, tuple[float, float]]:
    """(min, max) of every node output over the samples, by running the whole graph on each."""
    probe = graph.copy()
    values = [Value(node.name, index) for node in probe.nodes() if not node.is_constant
              for index in range(len(node.outputs))]
    probe.outputs = [(f"probe{i}", value) for i, value in enumerate(values)]
    interpreter = Interpreter(probe)
    low = {value: np.inf for value in values}
    high = {value: -np.inf for value in values}
    for index in range(len(next(iter(samples.values())))):
        results = interpreter.run({name: stack[index] for name, stack in samples.items()})
        for value, result in zip(values, results):
            result = np.asarray(result, np.float64)
            if result.size:
                low[value] = min(low[value], float(result.min()))
                high[value] = max(high[value], float(result.max()))
    return {value: (low[value], high[value]) for value in values}
