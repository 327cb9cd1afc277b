"""State variables of a stateful artifact (compiler/state.py), carried by each infer request.

The compiled code reads a variable as one of its inputs and writes the next value as one of its
outputs. `StateLayout` hides those from the signature a caller sees and splices them back in; each
request owns one `VariableState` per variable (OpenVINO's query_state / reset_state), so concurrent
requests never share state.
"""

from __future__ import annotations

import io

import numpy as np

from runtime.signature import InputError, TensorInfo, validate_inputs


class VariableState:
    """One state variable of one request: `name`, `state` (a copy of the value), `set_state(value)`
    (checked like an input), `reset()` to the artifact's initial value."""

    def __init__(self, info: TensorInfo, initial: np.ndarray):
        self.name = info.name
        self._info = info
        self._initial = initial
        self._value = initial.copy()

    @property
    def state(self) -> np.ndarray:
        return self._value.copy()

    def set_state(self, value) -> None:
        try:
            self._value = np.array(validate_inputs([self._info], {self.name: value})[0], copy=True)
        except InputError as error:
            raise InputError(f"state variable {self.name!r}: {error}") from None

    def reset(self) -> None:
        self._value = self._initial.copy()

    def __repr__(self) -> str:
        return f"<VariableState {self.name} {self._info.dtype}{list(self._info.shape)}>"


class StateLayout:
    """Which artifact inputs and outputs are state, and their initial values."""

    def __init__(self, files, inputs: list[TensorInfo], outputs: list[TensorInfo]):
        entries = files.manifest.get("state", [])
        self._input_of = {e["input"]: e["output"] for e in entries}
        output_names = set(self._input_of.values())
        self.all_inputs, self.all_outputs = inputs, outputs
        self.inputs = [info for info in inputs if info.name not in self._input_of]
        self.outputs = [info for info in outputs if info.name not in output_names]
        by_name = {info.name: info for info in inputs}
        self._variables = [(by_name[e["input"]], np.load(io.BytesIO(bytes(files.read(e["initial"]))),
                                                         allow_pickle=False)) for e in entries]

    def __bool__(self) -> bool:
        return bool(self._variables)

    def new_states(self) -> dict[str, VariableState]:
        return {info.name: VariableState(info, initial) for info, initial in self._variables}

    def full_inputs(self, values: list, states: dict[str, VariableState]) -> list:
        """The artifact's inputs: the caller's `values` (in `self.inputs` order) with the states spliced in."""
        given = iter(values)
        return [states[info.name]._value if info.name in states else next(given) for info in self.all_inputs]

    def take_outputs(self, results: list, states: dict[str, VariableState]) -> list:
        """The caller's outputs; the state outputs become the variables' values."""
        by_name = {info.name: value for info, value in zip(self.all_outputs, results)}
        for input_name, output_name in self._input_of.items():
            states[input_name]._value = by_name[output_name]
        return [by_name[info.name] for info in self.outputs]
