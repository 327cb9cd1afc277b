"""Runs "hetero" artifacts (compiler/partition.py): parts on different targets, in order.

Each part is a whole artifact stored under its prefix (the dispatch part mechanism). The executor
keeps the tensors by value name: the model's inputs, then every part's outputs, and feeds each part
the ones it lists. A gna part quantizes what it reads and dequantizes what it writes itself.
"""

from __future__ import annotations


class HeteroExecutor:
    def __init__(self, files, **options):
        from runtime.model import executor_for  # model.py imports the executors by name; no cycle at import

        manifest = files.manifest
        self._names = [entry["name"] for entry in manifest["inputs"]]
        self._results = manifest["output_values"]
        self.parts = [(part["inputs"], part["outputs"], executor_for(files.part(part["prefix"]), options))
                      for part in manifest["parts"]]

    def run(self, inputs: list) -> list:
        values = dict(zip(self._names, inputs))
        for reads, writes, executor in self.parts:
            values.update(zip(writes, executor.run([values[name] for name in reads])))
        return [values[name] for name in self._results]

    def close(self) -> None:
        for _, _, executor in self.parts:
            close = getattr(executor, "close", None)
            if close is not None:
                close()
