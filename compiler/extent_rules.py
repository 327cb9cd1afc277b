"""Where each value holds the dynamic dims (compiler/dynamic_extent.py), op by op.

Each rule sees one node with what each input holds (compiler/extent_types.py) and returns what each
output holds, and the masks the node needs: an input to read through a kiln::MaskTail filling the
positions past the valid ones along an axis (a softmax over the dim reads -inf there, a sum or a
contraction 0). One mask is for speed: a product's columns past s are padding, but computed where a
kernel does not cut them, and the padding of the right-hand operand is whatever the workspace held,
denormal floats included, which stall the multiply units; it reads 0 there. Convolutions and pools
are in compiler/extent_image_rules.py. A node that would mix positions in a way no mask fixes raises
ExtentProblem with the reason.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from compiler.dynamic_batch import ELEMENTWISE, ELEMENTWISE_KILN, REDUCTIONS, VIEWS
from compiler.extent_image_rules import IMAGE_RULES
from compiler.extent_types import (NONE, Effect, Extent, ExtentProblem, Held, Mask, Op, aligned, flat_stride, kept,
                                   no_extent_in, union)
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ops.fused_linear import BASES as FUSED_LINEAR
from compiler.ops.fused_normalization import BASES as FUSED_NORMALIZATION

MASK_OP, SCALE_OP = "MaskTail", "ExtentScale"
SOFTMAXES = ("Softmax", "LogSoftmax", "Hardmax")
REDUCTION_FILLS = {"ReduceSum": 0.0, "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceSumSquare": 0.0, "ReduceLogSum": 0.0,
                   "ReduceMax": -math.inf, "ReduceMin": math.inf, "ReduceLogSumExp": -math.inf, "ReduceProd": 1.0}


def reshaped(op: Op, axes: frozenset, shape, new_shape) -> frozenset:
    """What a reshape's output holds: the output axis whose elements hold each dim's positions whole."""
    result = set()
    for held in axes:
        flat = flat_stride(shape, held.axis, held.inner)
        for target in range(len(new_shape)):
            stride = math.prod(new_shape[target + 1:])
            if flat % stride == 0 and (stride * new_shape[target]) % (flat * op.bound(held.extent)) == 0:
                result.add(held._replace(axis=target, inner=flat // stride))
                break
        else:
            raise ExtentProblem(f"it splits the dynamic dim across axes ({list(shape)} -> {list(new_shape)})")
    return frozenset(result)


def _elementwise(op: Op) -> Effect:
    return Effect([aligned(op, range(len(op.axes)))] * len(op.node.outputs))


def _view(op: Op) -> Effect:
    no_extent_in(op, range(1, len(op.axes)), "shape")
    return Effect([reshaped(op, op.axes[0], op.shape(0), op.out_shape)])


def _transpose(op: Op) -> Effect:
    perm = list(op.node.attrs.get("perm", reversed(range(len(op.shape(0))))))
    return Effect([frozenset(held._replace(axis=perm.index(held.axis)) for held in op.axes[0])])


def _masks(index: int, helds, fill: float) -> list[Mask]:
    return [Mask(index, held.axis, held.inner, fill, held.extent) for held in sorted(helds)]


def _contraction(op: Op, a: int, a_k: int, b: int, b_k: int) -> list[Mask]:
    """Masks for a product summing input a's axis a_k against input b's axis b_k: both read 0 past s."""
    a_held, b_held = op.on_axis(a, a_k), op.on_axis(b, b_k)
    if len(a_held) != len(b_held) or any(x.inner != y.inner or not op.same(x.extent, y.extent)
                                         for x, y in zip(sorted(a_held), sorted(b_held))):
        raise ExtentProblem("it contracts the dynamic dim of one operand against a dim of fixed size")
    return _masks(a, a_held, 0.0) + _masks(b, b_held, 0.0)


def _linear_base(op: Op, op_type: str, trans_a: bool = False, trans_b: bool = False) -> Effect:
    """MatMul (batched, right-aligned) or Gemm (2-D, transposes, C broadcast) on inputs 0 and 1 (and 2)."""
    rank_a, rank_b, out = len(op.shape(0)), len(op.shape(1)), op.out_shape
    if (rank_a < 2 and op.axes[0]) or (rank_b < 2 and op.axes[1]):
        raise ExtentProblem("a vector operand holds the dynamic dim")
    m_axis, k_axis = (rank_a - 1, rank_a - 2) if trans_a else (rank_a - 2, rank_a - 1)
    kb_axis, n_axis = (rank_b - 1, rank_b - 2) if trans_b else (rank_b - 2, rank_b - 1)
    result = []
    for index, own, target, rank in ((0, m_axis, len(out) - 2, rank_a), (1, n_axis, len(out) - 1, rank_b)):
        for held in op.axes[index]:
            if held.axis == own:
                result.append(held._replace(axis=target))
            elif held.axis < rank - 2:
                if op.shape(index)[held.axis] != out[held.axis + len(out) - rank]:
                    raise ExtentProblem("it broadcasts the dynamic dim over the batch of matrices")
                result.append(held._replace(axis=held.axis + len(out) - rank))
    if op_type == "Gemm" and len(op.axes) > 2:
        result += aligned(op, [2])
    columns = _masks(1, op.on_axis(1, n_axis), 0.0)
    return Effect([union(op, result)], _contraction(op, 0, k_axis, 1, kb_axis) + columns)


def _linear(op: Op) -> Effect:
    node = op.node
    op_type, count = FUSED_LINEAR.get(node.op_type, (node.op_type, len(op.axes)))
    effect = _linear_base(op, op_type, bool(node.attrs.get("transA", 0)), bool(node.attrs.get("transB", 0)))
    if node.domain == KILN_DOMAIN:
        effect.outputs = [union(op, effect.outputs[0] | aligned(op, range(count, len(op.axes))))]
    return effect


def _softmax(op: Op) -> Effect:
    node, rank = op.node, len(op.shape(0))
    base_inputs = 0
    if node.op_type in FUSED_NORMALIZATION:
        base_inputs = FUSED_NORMALIZATION[node.op_type][1]
        x_axes = aligned(op, range(base_inputs, len(op.axes)))
        if node.attrs.get("prologue"):
            if any(held.axis == op.axis(rank, -1) for held in x_axes):
                raise ExtentProblem("its fused prologue computes the softmax input after the dynamic dim's mask")
            return Effect([x_axes])
    x_axes = op.axes[base_inputs]
    axis = op.axis(rank, -1 if (node.version or 13) >= 13 else 1)
    if (node.version or 13) < 13 and axis != rank - 1 and any(held.axis >= axis for held in x_axes):
        raise ExtentProblem("before opset 13 it flattens the dynamic dim with the axes after it")
    return Effect([x_axes], _masks(base_inputs, [held for held in x_axes if held.axis == axis], -math.inf))


def _layer_normalization(op: Op) -> Effect:
    node = op.node
    if node.op_type in FUSED_NORMALIZATION:
        count = FUSED_NORMALIZATION[node.op_type][1]
        no_extent_in(op, range(count), "scale or bias")
        x_axes = aligned(op, range(count, len(op.axes)))
    else:
        no_extent_in(op, range(1, len(op.axes)), "scale or bias")
        x_axes = op.axes[0]
    rank = len(op.out_shape)
    if any(held.axis >= op.axis(rank, -1) for held in x_axes):
        raise ExtentProblem("it normalizes over the dynamic dim")
    return Effect([x_axes] * len(node.outputs))


def _reduction(op: Op) -> Effect:
    node, rank = op.node, len(op.shape(0))
    axes = node.attrs.get("axes")
    if axes is None and len(op.axes) > 1:
        no_extent_in(op, [1], "axes")
        constant = op.constant(1)
        if constant is None and op.graph.input_values(node)[1] is not None:
            raise ExtentProblem("its axes are computed at run time")
        axes = None if constant is None else constant.ravel().tolist()
    if not axes and node.attrs.get("noop_with_empty_axes", 0):
        return Effect([op.axes[0]])
    reduced = set(range(rank)) if not axes else {int(a) % rank for a in axes}
    over = [held for held in op.axes[0] if held.axis in reduced]
    if over and node.op_type not in REDUCTION_FILLS:
        raise ExtentProblem(f"{node.op_type} over the dynamic dim would count the padding; use a ReduceSum and "
                            "divide by the length in the model, or compile static parts with specialize=")
    masks = _masks(0, over, REDUCTION_FILLS.get(node.op_type, 0.0))
    return Effect([kept(op.axes[0], reduced, bool(node.attrs.get("keepdims", 1)))], masks)


def _arg_extreme(op: Op) -> Effect:
    node, rank = op.node, len(op.shape(0))
    axis = op.axis(rank, 0)
    fill = -math.inf if node.op_type == "ArgMax" else math.inf
    masks = _masks(0, op.on_axis(0, axis), fill)
    return Effect([kept(op.axes[0], {axis}, bool(node.attrs.get("keepdims", 1)))], masks)


def _cumsum(op: Op) -> Effect:
    """A running sum along the dim reads only earlier positions, unless it runs in reverse."""
    axis = op.constant(1)
    no_extent_in(op, [1], "axis")
    along = axis is None or any(held.axis == int(axis) % len(op.shape(0)) for held in op.axes[0])
    if along and op.node.attrs.get("reverse", 0):
        raise ExtentProblem("it sums the dynamic dim in reverse, from the padding")
    return Effect([op.axes[0]])


def _gather(op: Op) -> Effect:
    rank = len(op.shape(0))
    axis = op.axis(rank, 0)
    indices_rank = len(op.shape(1))
    result = [held._replace(axis=axis + held.axis) for held in op.axes[1]]
    for held in op.axes[0]:
        if held.axis < axis:
            result.append(held)
        elif held.axis > axis:
            result.append(held._replace(axis=held.axis + indices_rank - 1))
        else:
            indices = op.constant(1)
            if indices is None or held.inner != 1 or not np.all((indices >= 0) & (indices < op.low(held.extent))):
                raise ExtentProblem("it gathers along the dynamic dim (only constant indices below the dim's "
                                    "lower bound can be gathered there)")
    return Effect([union(op, result)])


def _along_axis(op: Op) -> Effect:
    """Concat and Split: anything but the dim's axis."""
    rank = len(op.shape(0))
    axis = op.axis(rank, 0)
    if op.node.op_type == "Split":
        no_extent_in(op, [1], "split sizes")
        indices = [0]
    else:
        indices = range(len(op.axes))
    combined = union(op, [held for index in indices for held in op.axes[index]])  # one rank, equal but on axis
    if any(held.axis == axis for held in combined):
        raise ExtentProblem(f"it {'splits' if op.node.op_type == 'Split' else 'joins'} along the dynamic dim")
    return Effect([combined] * len(op.node.outputs))


def _keeps_dim(op: Op) -> Effect:
    """Slice, Pad, Tile, Expand: fine while they leave the dim's axis as it is."""
    no_extent_in(op, range(1, len(op.axes)), "parameters")
    shape, out = op.shape(0), op.out_shape
    if op.node.op_type == "Expand":
        return Effect([aligned(op, [0])])
    for held in op.axes[0]:
        if shape[held.axis] != out[held.axis]:
            raise ExtentProblem(f"{op.node.op_type} changes the dynamic dim's axis {held.axis}")
    if op.node.op_type == "Slice":
        starts, steps = op.constant(1), op.constant(4)
        axes = op.constant(3)
        axes = range(len(starts)) if axes is None and starts is not None else axes
        sliced = {int(a) % len(shape): (int(s), 1 if steps is None else int(steps[i]))
                  for i, (a, s) in enumerate(zip(axes, starts))} if starts is not None else None
        if sliced is None or any(sliced.get(held.axis, (0, 1)) != (0, 1) for held in op.axes[0]):
            raise ExtentProblem("it slices along the dynamic dim")
    return Effect([op.axes[0]])


def _shape_only(op: Op) -> Effect:
    return Effect([NONE] * len(op.node.outputs))


def _mask(op: Op) -> Effect:
    """kiln::MaskTail and kiln::ExtentScale keep every element where it is."""
    return Effect([op.axes[0]])


_RULES: dict[str, Callable[[Op], Effect]] = {
    **{name: _elementwise for name in ELEMENTWISE | ELEMENTWISE_KILN | {"Dropout"}},
    **{name: _view for name in VIEWS}, "Transpose": _transpose,
    **{name: _linear for name in ("MatMul", "Gemm", *FUSED_LINEAR)},
    **{name: _softmax for name in (*SOFTMAXES, "FusedSoftmax")},
    "LayerNormalization": _layer_normalization, "FusedLayerNormalization": _layer_normalization,
    **IMAGE_RULES,
    **{name: _reduction for name in REDUCTIONS}, "ArgMax": _arg_extreme, "ArgMin": _arg_extreme,
    "CumSum": _cumsum, "Gather": _gather, "Concat": _along_axis, "Split": _along_axis,
    **{name: _keeps_dim for name in ("Slice", "Pad", "Tile", "Expand")},
    "Shape": _shape_only, "Size": _shape_only, MASK_OP: _mask, SCALE_OP: _mask,
}


def mask_attributes(mask: Mask, bound: int) -> dict:
    """A kiln::MaskTail node's attributes for `mask` (`bound`: the positions compiled for)."""
    return {"axis": mask.axis, "inner": mask.inner, "bound": bound, "fill": mask.fill,
            "extent": mask.extent.to_json(), "reach": bound if mask.reach is None else min(mask.reach, bound)}


def _is_mask(node: Node, mask: Mask, dims: tuple[tuple[int, int], ...]) -> bool:
    """Whether MaskTail `node` fills what `mask` asks: the same positions, as far past them at least."""
    return node.domain == KILN_DOMAIN and node.op_type == MASK_OP and \
        (node.attrs["axis"], node.attrs["inner"], node.attrs["fill"]) == (mask.axis, mask.inner, mask.fill) and \
        Extent.from_json(node.attrs["extent"]).same(mask.extent, dims) and \
        node.attrs["reach"] >= (node.attrs["bound"] if mask.reach is None else min(mask.reach, node.attrs["bound"]))


def is_masked(graph: Graph, value: Value, mask: Mask, dims: tuple[tuple[int, int], ...]) -> bool:
    """Whether `value` already reads `mask.fill` past s along the mask's axis: it is such a MaskTail's
    output (maybe through masks of other axes), or (fill 0) a Softmax over that axis of a -inf-masked
    input, exactly 0 there. `dims`: the dynamic dims' bounds, over which extents are compared."""
    producer = graph.node(value.node)
    if _is_mask(producer, mask, dims):
        return True
    if producer.domain == KILN_DOMAIN and producer.op_type == MASK_OP:  # a mask along another axis keeps this one
        return is_masked(graph, graph.input_values(producer)[0], mask, dims)
    if mask.fill != 0.0 or producer.domain != "" or producer.op_type != "Softmax":
        return False
    rank = len(producer.outputs[0].shape)
    axis = int(producer.attrs.get("axis", -1)) % rank
    source = graph.input_values(producer)[0]
    return axis == mask.axis and (producer.version or 13) >= 13 and \
        is_masked(graph, source, Mask(0, mask.axis, mask.inner, float("-inf"), mask.extent), dims)


def rule_for(node: Node) -> Callable[[Op], Effect] | None:
    if node.domain not in ("", KILN_DOMAIN):
        return None
    if node.domain == KILN_DOMAIN and node.op_type not in (*ELEMENTWISE_KILN, *FUSED_LINEAR, *FUSED_NORMALIZATION,
                                                           MASK_OP, SCALE_OP):
        return None
    return _RULES.get(node.op_type)


def propagate(graph: Graph, inputs, dims: tuple[tuple[int, int], ...],
              on_effect: Callable[[Node, Effect], None]) -> dict[Value, frozenset]:
    """value -> what it holds (for those holding a dynamic dim), from `inputs` ((name, axis, dim) each) and
    each dim's (low, high) bounds; `on_effect(node, effect)` sees each node needing masks or a rescale.
    Raises ExtentProblem naming the first node that cannot run."""
    axes: dict[Value, frozenset] = {}
    for name, axis, dim in inputs:
        axes[Value(name)] = axes.get(Value(name), NONE) | {Held(axis, 1, Extent(dim))}
    for node in graph.topological_order():
        if node.is_input or node.is_constant:
            continue
        in_axes = [NONE if value is None else axes.get(value, NONE) for value in graph.input_values(node)]
        if not any(in_axes):
            continue
        rule = rule_for(node)
        try:
            if rule is None:
                raise ExtentProblem("Kiln does not know how this op moves the dynamic dim")
            effect = rule(Op(graph, node, in_axes, dims))
        except ExtentProblem as problem:
            raise ExtentProblem(f"node {node.name!r} ({node.qualified_op}) cannot run with a dynamic dim padded to "
                                f"its bound: {problem}. Compile one part per size with specialize= instead") from None
        if effect.masks or effect.rescale:
            on_effect(node, effect)
        for index, value_axes in enumerate(effect.outputs):
            if value_axes:
                axes[Value(node.name, index)] = value_axes
    return axes
