"""Sample inputs for passes that measure a float graph: calibration data or seeded random inputs.

Precision passes (gna quantization, int8 post-training quantization, the fp16 overflow check) all
run the float graph through the ref interpreter over samples. Samples come from calibration data
(`calibration=`: an .npz, or a directory of NAME.npy files; each array is one input tensor or a
stack of them along a new leading axis) or, without it, from seeded standard-normal inputs (the
scale ONNX test data and normalized features have; integer inputs get small ids in [0, 10)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import numpy_dtype
from compiler.ops.interpreter import Interpreter

SYNTHETIC_SAMPLES = 16


class CalibrationError(ValueError):
    """Calibration data that cannot be used for this model."""


def _stack(name: str, array: np.ndarray, value_type, regroup: bool = False) -> np.ndarray:
    """[samples, *shape] in the input's dtype from one sample or a stack of them; with `regroup` (a dynamic
    batch, compiled at its bound), samples of another batch size are regrouped into batches of the
    model's (their entries in order, a last partial batch dropped): ranges do not depend on the grouping."""
    array, shape, dtype = np.asarray(array), tuple(value_type.shape), numpy_dtype(value_type.dtype)
    if array.shape == shape:
        return array[None].astype(dtype)
    if array.shape[1:] == shape and len(array):
        return array.astype(dtype)
    tail = array.shape[array.ndim - len(shape) + 1:] if array.ndim in (len(shape), len(shape) + 1) else None
    if regroup and shape and tail == shape[1:]:  # one sample [b, ...] or a stack [samples, b, ...]
        entries = array.reshape(-1, *shape[1:])
        whole = len(entries) // shape[0] * shape[0]
        if whole:
            return entries[:whole].reshape(-1, *shape).astype(dtype)
    raise CalibrationError(f"calibration input {name!r} has shape {list(array.shape)}; the model takes "
                           f"{list(shape)}: give one sample of that shape or a stack [samples, *shape]")


def _check_size(size: int | None) -> None:
    if size is not None and size < 1:
        raise CalibrationError(f"calibration size {size}: give a positive number of samples")


def load_calibration(path, graph: Graph, size: int | None = None,
                     regroup: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Samples per graph input from an .npz file or a directory of NAME.npy files (the first `size`); the
    inputs in `regroup` carry a dynamic batch (see _stack)."""
    _check_size(size)
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
    stacks = {name: _stack(name, arrays[name], graph.node(name).outputs[0], name in regroup)[:size]
              for name in graph.inputs}
    counts = {len(s) for s in stacks.values()}
    if len(counts) != 1:
        raise CalibrationError(f"calibration inputs hold different sample counts {sorted(counts)}; give each input "
                               "the same number of samples")
    return stacks


def _random(rng: np.random.Generator, value_type, count: int) -> np.ndarray:
    """Standard-normal floats; integers in [0, 10) and booleans (ids, masks) for the other inputs."""
    shape, dtype = (count, *value_type.shape), numpy_dtype(value_type.dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 2 if dtype == bool else 10, shape).astype(dtype)


def synthetic_samples(graph: Graph, count: int = SYNTHETIC_SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: _random(rng, graph.node(name).outputs[0], count) for name in graph.inputs}


def calibration_samples(graph: Graph, path=None, size: int | None = None, seed: int = 0,
                        regroup: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The samples a precision pass measures on: `path`'s data if given (`regroup`: see load_calibration),
    else `size` (default 16) seeded ones."""
    _check_size(size)
    if path:
        return load_calibration(path, graph, size, regroup)
    return synthetic_samples(graph, size or SYNTHETIC_SAMPLES, seed)


def sample_count(samples: dict[str, np.ndarray]) -> int:
    return len(next(iter(samples.values())))


def sample_values(graph: Graph, values: list[Value], samples: dict[str, np.ndarray]) -> list[np.ndarray]:
    """[count, *shape] per value: the float graph run over each sample."""
    probe = graph.copy()
    probe.outputs = [(f"probe{i}", value) for i, value in enumerate(values)]
    interpreter = Interpreter(probe)
    runs = [interpreter.run({name: stack[index] for name, stack in samples.items()})
            for index in range(sample_count(samples))]
    return [np.stack([np.asarray(run[i]) for run in runs]) for i in range(len(values))]


def value_ranges(graph: Graph, samples: dict[str, np.ndarray],
                 outputs: list | None = None) -> dict[Value, tuple[float, float]]:
    """(min, max) of every node output over the samples, by running the whole graph on each; each
    sample's graph outputs are appended to `outputs` when it is given (one list per sample)."""
    probe = graph.copy()
    values = [Value(node.name, index) for node in probe.nodes() if not node.is_constant
              for index in range(len(node.outputs))]
    probe.outputs = [(f"probe{i}", value) for i, value in enumerate([*values, *(v for _, v in graph.outputs)])]
    interpreter = Interpreter(probe)
    low = {value: np.inf for value in values}
    high = {value: -np.inf for value in values}
    for index in range(sample_count(samples)):
        results = interpreter.run({name: stack[index] for name, stack in samples.items()})
        if outputs is not None:
            outputs.append(results[len(values):])
        for value, result in zip(values, results):
            result = np.asarray(result, np.float64)
            if result.size:
                low[value] = min(low[value], float(result.min()))
                high[value] = max(high[value], float(result.max()))
    return {value: (low[value], high[value]) for value in values}
