"""The auto and multi targets: one artifact holding the whole model compiled for several targets.

`compile(model, "auto:gpu,cpu")` compiles the model once per listed target (each with its own
pipeline) and stores the builds as parts (the dispatch part mechanism, compiler/dispatch.py). At
load, runtime/auto.py picks the first listed target this machine can run (OpenVINO's AUTO device)
and, while a GPU program builds, serves requests on the cpu build. `multi:gpu,cpu` loads every
build the machine can run and spreads requests over them for throughput (OpenVINO's MULTI).
Every listed target must compile the whole model; `kiln check` names what one of them refuses.
"""

from __future__ import annotations

from compiler.artifact import Artifact, compiler_version
from compiler.ir.graph import Graph
from compiler.passes.manager import PassSpec
from compiler.targets.base import Target, Unsupported, get_target, register_target
from compiler.targets.ref import RefTarget


class _EveryTarget(Target):
    """The model built for each target of the spec, in priority order."""

    composite = True

    def __init__(self, spec: str = ""):
        self.devices = [device.strip() for device in spec.split(",") if device.strip()]
        if not self.devices:
            raise ValueError(f"the {self.name} target needs its targets in priority order, e.g. {self.name}:gpu,cpu")
        if any(get_target(device).composite for device in self.devices) or len(set(self.devices)) != len(self.devices):
            raise ValueError(f"{self.name}:{spec}: list each target once, and no composite targets")
        self.targets = {device: get_target(device) for device in self.devices}

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        return [Unsupported(node.name, node.qualified_op, f"{device}: {problem}")
                for node in graph.nodes() if not (node.is_input or node.is_constant)
                for device, target in self.targets.items() if (problem := target.node_problem(graph, node))]

    def pipeline(self, options: dict) -> list[PassSpec]:
        return [PassSpec("fold-constants", why="shape computations fold once for every build"),
                *RefTarget().pipeline(options)]

    def emit(self, graph: Graph, options: dict) -> Artifact:
        from compiler.driver import compile

        builds = [compile(graph, device, **options) for device in self.devices]
        manifest = {"target": self.name, "compiler_version": compiler_version(),
                    "inputs": builds[0].manifest["inputs"], "outputs": builds[0].manifest["outputs"], "parts": []}
        files = {}
        for index, (device, build) in enumerate(zip(self.devices, builds)):
            prefix = f"p{index}."
            manifest["parts"].append({"prefix": prefix, "target": device})
            files[prefix + "manifest.json"] = build.manifest_bytes()
            files.update({prefix + name: data for name, data in build.files.items()})
        return Artifact(manifest, files)


@register_target
class AutoTarget(_EveryTarget):
    name = "auto"
    description = "builds for several targets; the runtime picks the best one present: auto:gpu,cpu"


@register_target
class MultiTarget(_EveryTarget):
    name = "multi"
    description = "builds for several targets; the runtime spreads requests over all present: multi:gpu,cpu"
