"""One OpenCL program per model, and its launch plan.

Every step of the memory plan becomes kernel launches (or a buffer copy into a graph output).
Kernels with identical source (same op, shapes and attributes) are emitted once and launched
with different arguments, so a network of repeated blocks builds fewer kernels. Each kernel's
section of the source (its helper functions, then the kernel) starts with a line
`// kernel NAME: OP (node NODE)`, which build errors are traced back by. An argument is a buffer
(an input, an output, the weights, the workspace, the scratch buffer or the extent buffer, which holds
a dynamic extent's size: compiler/dynamic_extent.py) plus the element offset of the tensor in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.codegen.kernel_table import node_entry
from compiler.codegen.memory_plan import Location, MemoryPlan, tensor_bytes
from compiler.codegen.opencl.dialect import OpenCLDialect
from compiler.codegen.opencl.kernels.registry import NAME, GpuContext, Tensor, gpu_kernel_for
from compiler.codegen.opencl.launch import Launch, LaunchPlanner
from compiler.ir.graph import Graph, Value
from compiler.ir.types import numpy_dtype


@dataclass
class Program:
    source: str
    steps: list[dict]  # the launch plan, in order
    kernels: int  # distinct kernels in `source`
    table: list[dict]  # the profiled nodes, in order: a launch's `profile` is its entry's index
    scratch_bytes: int  # the largest scratch buffer a kernel takes (GpuContext.scratch)


def _argument(location: Location, tensor: Tensor) -> dict:
    if location.region in ("input", "output"):
        return {"buffer": location.region, "index": location.offset, "offset": 0}
    return {"buffer": location.region, "offset": location.offset // numpy_dtype(tensor.dtype).itemsize}


def _buffer(location: Location) -> dict:
    """A place in bytes, for copies."""
    if location.region in ("input", "output"):
        return {"buffer": location.region, "index": location.offset, "offset": 0}
    return {"buffer": location.region, "offset": location.offset}


def _entries(launch: Launch, chunk: int) -> dict | None:
    """A step's `batch`: how its dim `axis` shrinks for n of the `chunk` entries it was compiled for
    (ceil(n * per_entry / per_group) groups), when its kernel says its work walks the batch."""
    if launch.entries is None or launch.entries[1] % chunk:
        return None
    axis, units, per_group = launch.entries
    return {"axis": axis, "per_entry": units // chunk, "per_group": per_group}


def _extent_rule(launch: Launch, held: tuple[int, int] | None, batched: bool, chunk: int) -> dict | None:
    """A step's `extent`: when its output holds the first dynamic dim whole on an axis (`held`: that
    axis's bound and the groups of it the axes before hold at the bounds) and its kernel's work walks the
    output in order, how its dim `axis` shrinks for the positions below a size s when a call leaves one
    group: ceil(ceil(s * units / groups / bound) / per_group) groups."""
    if launch.entries is None or held is None:
        return None
    axis, units, per_group = launch.entries
    bound, groups = held
    if units % groups:
        return None
    return {"axis": axis, "units": units // groups, "bound": bound, "per_group": per_group,
            "groups": groups // chunk if batched else groups, "batched": batched}


def build_program(graph: Graph, plan: MemoryPlan, dialect: OpenCLDialect, planner: LaunchPlanner,
                  batched: set[str] = frozenset(), chunk: int = 1,
                  extent_rows: dict[str, tuple[int, int]] | None = None) -> Program:
    """The program and its launch plan; a dynamic batch compiled for `chunk` entries gives the nodes
    whose outputs carry it (`batched`), whose launches may then shrink with the batch. `extent_rows`:
    per node whose output holds the first dynamic dim whole in rows, (its bound, the groups before it),
    whose launches may shrink with the size when a call leaves one group (a batch of one sequence)."""
    names: dict[str, str] = {}  # kernel source -> its name
    sources: list[str] = []
    steps: list[dict] = []
    table: list[dict] = []
    scratch = 0
    for step in plan.steps:
        if step.node is None:
            size = tensor_bytes(graph.type_of(step.copy_source))
            if size:
                steps.append({"copy": {"from": _buffer(plan.locations[step.copy_source]),
                                       "to": _buffer(Location("output", step.output_index)), "bytes": size}})
            continue
        node = step.node
        values = graph.input_values(node)
        entry = len(table)
        for launch in gpu_kernel_for(node).launches(GpuContext(graph, node, dialect, planner)):
            if math.prod(launch.launch.global_size) == 0:
                continue
            if launch.source not in names:
                names[launch.source] = f"k{len(names)}_{node.op_type.lower()}"
                name = names[launch.source]
                sources.append(f"// kernel {name}: {node.qualified_op} (node {node.name})\n"
                               + launch.source.replace(NAME, name))
            args = [{"buffer": p.role, "offset": 0} if p.role in ("scratch", "extent") else
                    _argument(plan.locations[values[p.index] if p.role == "input" else Value(node.name, p.index)], p)
                    for p in launch.params]
            scratch = max([scratch] + [p.size * 4 for p in launch.params if p.scratch])
            steps.append({"kernel": names[launch.source], "node": node.name, "op_type": node.qualified_op,
                          "args": args, "global": list(launch.launch.global_size),
                          "local": list(launch.launch.local_size), "profile": entry})
            entries = _entries(launch.launch, chunk) if node.name in batched else None
            if entries:
                steps[-1]["batch"] = entries
            extent = _extent_rule(launch.launch, (extent_rows or {}).get(node.name), node.name in batched, chunk)
            if extent:
                steps[-1]["extent"] = extent
        if len(steps) and steps[-1].get("profile") == entry:
            table.append(node_entry(graph, node, steps[-1]["kernel"]))
    source = "\n".join(part for part in [dialect.prelude(), *sources] if part)
    return Program(source, steps, len(names), table, scratch)
