"""Stateful models: input/output pairs the runtime carries from one inference to the next.

`compile(model, target, state={"h_in": "h_out"}, initial_state={"h_in": array})` (`kiln compile
--state h_in=h_out --initial-state h_in=FILE.npy`) turns each pair into a state variable (OpenVINO's
ReadValue/Assign): the input leaves the signature a caller feeds, the output leaves the outputs a
caller gets, and every infer request keeps the variable's value, starting from the initial value
(zeros by default). The compiled code is unchanged: it reads the state as an input and writes its
next value as an output; runtime/state.py does the carrying.

The manifest's `state` list holds, per variable, its input, its output and the artifact file with
its initial value (`state_<k>.npy`, deterministic bytes).
"""

from __future__ import annotations

import io
from typing import Mapping

import numpy as np

from compiler.ir.types import numpy_dtype


class StateError(ValueError):
    """A requested state pair or initial value does not fit the model."""


def _static_type(entries: list[dict], name: str, role: str) -> tuple[str, tuple[int, ...]]:
    """(dtype, shape) of the artifact input/output `name`, which must be a tensor of static shape."""
    entry = next((e for e in entries if e["name"] == name), None)
    if entry is None:
        raise StateError(f"state {role} {name!r} is not an {role} of the model; its {role}s: "
                         f"{[e['name'] for e in entries]}")
    value_type = entry["type"]
    shape = value_type.get("shape")
    if "tensor" not in value_type or shape is None or not all(isinstance(d, int) for d in shape):
        raise StateError(f"state {role} {name!r} is {value_type}; state variables need tensors of static shape: "
                         "compile with shapes={...} (--shape) to fix its dims")
    return value_type["tensor"], tuple(shape)


def state_files(manifest: dict, state: Mapping[str, str],
                initial_state: Mapping[str, object] | None = None) -> tuple[list[dict], dict[str, bytes]]:
    """The manifest's `state` entries and the artifact files with the initial values, checked against
    the artifact's inputs and outputs."""
    initial_state = dict(initial_state or {})
    unknown = sorted(set(initial_state) - set(state))
    if unknown:
        raise StateError(f"initial values given for {unknown}, which are not state inputs; "
                         f"state inputs: {sorted(state)}")
    if len(set(state.values())) != len(state):
        raise StateError(f"two state inputs name the same output: {dict(state)}; each output feeds one variable")
    entries, files = [], {}
    for index, (input_name, output_name) in enumerate(sorted(state.items())):
        input_type = _static_type(manifest["inputs"], input_name, "input")
        output_type = _static_type(manifest["outputs"], output_name, "output")
        if input_type != output_type:
            raise StateError(f"state {input_name!r} -> {output_name!r}: the input is {input_type[0]} "
                             f"{list(input_type[1])} but the output is {output_type[0]} {list(output_type[1])}; "
                             "a state variable's next value must have its type")
        dtype, shape = numpy_dtype(input_type[0]), input_type[1]
        value = initial_state.get(input_name)
        value = np.zeros(shape, dtype) if value is None else np.asarray(value)
        if value.shape != shape or value.dtype != dtype:
            raise StateError(f"initial value of state {input_name!r} is {value.dtype} {list(value.shape)}; the model "
                             f"expects {dtype} {list(shape)}")
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        file_name = f"state_{index}.npy"
        files[file_name] = buffer.getvalue()
        entries.append({"input": input_name, "output": output_name, "initial": file_name})
    return entries, files
