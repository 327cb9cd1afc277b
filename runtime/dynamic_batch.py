"""A dynamic batch at run time (manifest `dynamic_batch`, written by compiler/dynamic_batch.py), for the
cpu and gpu executors alike: which inputs and outputs carry the batch on axis 0 and how many rows an
entry is there, the buffer shapes the artifact was compiled for, the batch of a call, and an
unbounded batch larger than the compiled chunk run chunk by chunk (exact: entries are independent).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


class BatchPlan:
    def __init__(self, manifest: dict):
        spec = manifest["dynamic_batch"]
        self.chunk: int = spec["chunk"]
        # per input / output: rows of axis 0 per batch entry when it carries the batch, else None
        self.input_factors = [spec["inputs"].get(entry["name"]) for entry in manifest["inputs"]]
        self.output_factors = [spec["outputs"].get(entry["name"]) for entry in manifest["outputs"]]

    @classmethod
    def of(cls, manifest: dict) -> "BatchPlan | None":
        return cls(manifest) if manifest.get("dynamic_batch") else None

    def input_shapes(self, manifest: dict) -> list[list[int]]:
        return [self._compiled(entry, factor) for entry, factor in zip(manifest["inputs"], self.input_factors)]

    def output_shapes(self, manifest: dict) -> list[list[int]]:
        return [self._compiled(entry, factor) for entry, factor in zip(manifest["outputs"], self.output_factors)]

    def _compiled(self, entry: dict, factor: int | None) -> list[int]:
        """The buffer shape of a signature entry: a batched one at the entries the code is compiled for."""
        shape = entry["type"]["shape"]
        return [factor * self.chunk, *shape[1:]] if factor is not None else shape

    def batch_of(self, inputs: list) -> int:
        """The batch size of a call (the caller checked it against the bounds)."""
        return next(value.shape[0] for factor, value in zip(self.input_factors, inputs) if factor is not None)

    def first_entries(self, outputs: list, batch: int) -> list:
        """The outputs of the first `batch` entries, from buffers holding the compiled chunk."""
        return [output if factor is None else output[:factor * batch]
                for factor, output in zip(self.output_factors, outputs)]

    def in_chunks(self, inputs: list, batch: int, call: Callable[[list], list]) -> list:
        """`call` on each chunk of entries in turn, outputs joined on axis 0."""
        results = []
        for start in range(0, batch, self.chunk):
            results.append(call([value if factor is None else value[start:start + self.chunk]
                                 for factor, value in zip(self.input_factors, inputs)]))
        return [parts[0] if factor is None else np.concatenate(parts)
                for factor, parts in zip(self.output_factors, zip(*results))]
