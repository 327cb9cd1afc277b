"""Data movement as box copies: Transpose, DepthToSpace, SpaceToDepth, Concat, Split, Slice, Expand,
Tile, ConstantOfShape, Gather, GatherElements (planned in compiler/codegen/copy_plan.py, as the cpu
target plans them), Pad (every mode), Cast/CastLike, inference Dropout, and the Reshape family when
it needs a copy (the memory plan makes them views of their input otherwise).

Each box is one kernel with one work item per element. A padded box (Pad) maps each coordinate
to the source by the pad mode and reads the pad value outside the source, so a Pad is a single
launch whatever its mode; a box whose source is a one-element array writes that value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np

from compiler.codegen.copy_plan import GATHERS, MOVES, Copy, Dim, NotCompiled, Plan, coalesced_dims, constant_ints, \
    dense_copy, input_shape, plan_problem
from compiler.codegen.opencl.kernels.registry import GpuContext, GpuKernelSpec, KernelLaunch, register_gpu_kernel
from compiler.codegen.tensor_operand import dense_strides
from compiler.ir.graph import Graph, Node

PAD_MODES = ("constant", "reflect", "edge", "wrap")


@dataclass(frozen=True)
class Padded:
    """Box dim d reads source coordinate c_d - before[d] of a dim of `sizes[d]`, mapped by `mode`;
    `fill` is the constant mode's value (None: read from input 2 at run time)."""

    before: tuple[int, ...]
    sizes: tuple[int, ...]
    mode: str
    fill: float | int | None


def _pad(graph: Graph, node: Node) -> tuple[Copy, Padded]:
    shape, out_shape = input_shape(graph, node), node.outputs[0].shape
    mode = node.attrs.get("mode", "constant")
    if mode not in PAD_MODES:
        raise NotCompiled(f"Pad mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    pads = constant_ints(graph, node, 1, "pads", attr="pads")
    axes = constant_ints(graph, node, 3, "axes") or range(len(shape))
    before = [0] * len(shape)
    for k, axis in enumerate(axes):
        before[axis + len(shape) if axis < 0 else axis] = pads[k]
    if mode != "constant" and any(n == 0 and o for n, o in zip(shape, out_shape)):
        raise NotCompiled(f"{mode} padding of an empty axis has nothing to repeat")
    values = graph.input_values(node)
    fill = node.attrs.get("value", 0)
    if len(values) > 2 and values[2] is not None:
        constant = graph.constant_value(values[2])
        fill = None if constant is None else np.asarray(constant).reshape(-1)[0].item()
    copy = Copy(0, 0, tuple(out_shape), dense_strides(shape), dense_strides(out_shape))
    return copy, Padded(tuple(before), tuple(shape), mode, fill)


def _copy(graph: Graph, node: Node) -> list[Copy]:
    """Reshape family (a copy only where the memory plan cannot alias) and Cast: dense, converting."""
    return [dense_copy(0, node.outputs[0].shape)]


def _dropout(graph: Graph, node: Node) -> list[Copy]:
    """Inference Dropout: the output is the input and the mask all true. That holds when training mode
    is off (training_mode absent or a constant false; before opset 7, is_test set) or the ratio is a
    constant 0; training otherwise draws random numbers, which a compiled model does not reproduce."""
    if node.version is not None and node.version < 7 and not node.attrs.get("is_test", 0):
        raise NotCompiled(f"Dropout-{node.version} without is_test=1 runs in training mode, which draws random "
                          "numbers: not compiled by the gpu target (set is_test=1 for inference)")
    values = graph.input_values(node)
    training = values[2] if len(values) > 2 else None
    if training is not None:
        mode = graph.constant_value(training)
        ratio = graph.constant_value(values[1]) if values[1] is not None else None
        if mode is None or (np.any(mode) and (ratio is None or float(np.ravel(ratio)[0]) != 0.0)):
            raise NotCompiled("Dropout in training mode (or with training_mode computed at run time) draws random "
                              "numbers, which the gpu target does not generate (use training_mode=false)")
    shape = node.outputs[0].shape
    copies = [dense_copy(0, shape)]
    if len(node.outputs) > 1:
        copies.append(Copy(np.ones(1, bool), 1, tuple(shape), (0,) * len(shape), dense_strides(shape)))
    return copies


def _padded_source(lines: list[str], conditions: list[str], index: str, d: int, before: int, n: int,
                   mode: str) -> None:
    """Declare s<d>, the source coordinate of box coordinate c<d> under the pad mode."""
    lines.append(f"{index} s{d} = c{d} - {before};")
    if mode == "constant":
        conditions.append(f"s{d} >= 0 && s{d} < {n}")
    elif mode == "edge":
        lines.append(f"s{d} = clamp(s{d}, ({index})0, ({index}){n - 1});")
    elif mode == "wrap":
        lines.append(f"s{d} = ((s{d} % {n}) + {n}) % {n};")
    elif n == 1:  # reflect of a single element
        lines.append(f"s{d} = 0;")
    else:  # reflect: mirrored about both ends without repeating them, period 2(n - 1)
        period = 2 * (n - 1)
        lines.append(f"s{d} = (s{d} < 0 ? -s{d} : s{d}) % {period}; s{d} = s{d} < {n} ? s{d} : {period} - s{d};")


def _render(ctx: GpuContext, copy: Copy, padded: Padded | None = None) -> KernelLaunch:
    """The kernel of one box; a padded box keeps its dims as they are (each maps by the pad mode)."""
    dims = coalesced_dims(copy) if padded is None else \
        tuple(Dim(*dim, 0) for dim in zip(copy.sizes, copy.source_strides, copy.target_strides))
    target = ctx.output(copy.target, "y")
    count = math.prod(dim.size for dim in dims)
    target_terms = [str(copy.target_offset)] if copy.target_offset else []
    target_terms += [f"c{d} * {dim.target}" for d, dim in enumerate(dims) if dim.target]
    values = {"count": count, "sizes": [dim.size for dim in dims], "target": f"y[{' + '.join(target_terms) or '0'}]"}
    if isinstance(copy.source, np.ndarray):  # one value for the whole box
        fill = ctx.dialect.store_value(ctx.dialect.literal(copy.source.item(), target.dtype), target.dtype)
        return ctx.kernel("copy.cl.j2", [target], ctx.planner.linear(count), lines=[], value=fill, **values)
    source = ctx.input(copy.source, "x")
    params = [source]
    lines: list[str] = []
    conditions: list[str] = []
    terms = [str(copy.source_offset)] if copy.source_offset else []
    index = ctx.index_type([source, target], count)
    for d, dim in enumerate(dims):
        if padded:
            _padded_source(lines, conditions, index, d, padded.before[d], padded.sizes[d], padded.mode)
            terms.append(f"s{d} * {dim.source}")
        elif dim.source:
            terms.append(f"c{d} * {dim.source}")
    if copy.gathered:
        g = copy.gathered
        params.append(ctx.input(g.indices, "indices"))
        position = " + ".join(f"c{d} * {dim.position}" for d, dim in enumerate(dims) if dim.position) or "0"
        lines += [f"long g = indices[{position}];", f"g = clamp(g < 0 ? g + {g.axis_size} : g, 0L, {g.axis_size - 1}L);"]
        terms.append(f"({index})g * {g.stride}")
    lines.append(f"const {index} s = {' + '.join(terms) or '0'};")
    value = ctx.dialect.convert("x[s]", source.dtype, target.dtype)
    if conditions:
        if padded.fill is None:
            params.append(ctx.input(2, "value"))
            fill = "value[0]"
        else:
            fill = ctx.dialect.store_value(ctx.dialect.literal(padded.fill, target.dtype), target.dtype)
        value = f"({' && '.join(conditions)}) ? {value} : {fill}"
    return ctx.kernel("copy.cl.j2", params + [target], ctx.planner.linear(count), lines=lines, value=value, **values)


def _register(op_types: tuple[str, ...], plan: Plan) -> None:
    register_gpu_kernel(GpuKernelSpec(op_types, partial(plan_problem, plan),
                                      lambda ctx: [_render(ctx, copy) for copy in plan(ctx.graph, ctx.node)]))


for _op_types, _plan in {**MOVES, **GATHERS}.items():
    _register(_op_types, _plan)
_register(("Cast", "CastLike", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"), _copy)
_register(("Dropout",), _dropout)
register_gpu_kernel(GpuKernelSpec(("Pad",), partial(plan_problem, _pad),
                                  lambda ctx: [_render(ctx, *_pad(ctx.graph, ctx.node))]))
