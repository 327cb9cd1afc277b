"""Runs a ref artifact: decode the carried IR and interpret it with the reference kernels."""

from __future__ import annotations

import json

from compiler.ir.serialize import decode_graph
from compiler.ops.interpreter import Interpreter


class RefExecutor:
    def __init__(self, files, **options):
        graph = decode_graph(json.loads(bytes(files.read("graph.json"))), files.read("weights.bin"))
        self.interpreter = Interpreter(graph)

    def run(self, inputs: list) -> list:
        return self.interpreter.run(inputs)
