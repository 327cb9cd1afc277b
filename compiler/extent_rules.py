"""Where the dynamic extent (compiler/dynamic_extent.py) lies in every value, op by op.

A value holds the extent as a set of (axis, inner): along `axis`, index i is position
(i // inner) % bound of the dynamic dim. A plain dim is (axis, 1); a Reshape of [B, S, H] to
[B*S, H] gives (0, 1); scores [B, h, S, S] hold it twice, {(2, 1), (3, 1)}.

Each rule sees one node with the extent of each input and returns the extent of each output, and
the masks the node needs: an input to read through a kiln::MaskTail filling positions >= s along
an axis (a softmax over the dim reads -inf there, a sum or a contraction 0). One mask is for speed:
a product's columns past s are padding, but computed (launches are cut by rows only), and the
padding of the right-hand operand is whatever the workspace held, denormal floats included, which
stall the multiply units; it reads 0 there. A node that would mix positions in a way no mask fixes
raises ExtentProblem with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from compiler.dynamic_batch import ELEMENTWISE, ELEMENTWISE_KILN, PER_IMAGE, REDUCTIONS, VIEWS
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.fused_linear import BASES as FUSED_LINEAR
from compiler.ops.fused_normalization import BASES as FUSED_NORMALIZATION

Axes = frozenset
NONE: Axes = frozenset()
MASK_OP = "MaskTail"
SOFTMAXES = ("Softmax", "LogSoftmax", "Hardmax")
REDUCTION_FILLS = {"ReduceSum": 0.0, "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceSumSquare": 0.0, "ReduceLogSum": 0.0,
                   "ReduceMax": -math.inf, "ReduceMin": math.inf, "ReduceLogSumExp": -math.inf, "ReduceProd": 1.0}


class ExtentProblem(Exception):
    """Why a node cannot run with the dynamic extent padded to its bound."""


@dataclass(frozen=True)
class Mask:
    """Input `input` must read positions >= s along (axis, inner) as `fill`."""

    input: int
    axis: int
    inner: int
    fill: float


@dataclass
class Effect:
    outputs: list[Axes]
    masks: list[Mask] = field(default_factory=list)


@dataclass(frozen=True)
class Op:
    """What a rule sees: the node, its inputs' extents and the dim's bounds."""

    graph: Graph
    node: Node
    axes: list[Axes]
    bound: int
    low: int

    def shape(self, index: int) -> tuple[int, ...]:
        return _static(self.graph.input_types(self.node)[index], f"input {index}")

    @property
    def out_shape(self) -> tuple[int, ...]:
        return _static(self.node.outputs[0], "the output")

    def axis(self, rank: int, default: int, name: str = "axis") -> int:
        axis = int(self.node.attrs.get(name, default))
        return axis + rank if axis < 0 else axis

    def constant(self, index: int) -> np.ndarray | None:
        values = self.graph.input_values(self.node)
        return None if index >= len(values) or values[index] is None else self.graph.constant_value(values[index])

    def carried(self, index: int) -> dict[int, set[int]]:
        """axis -> the inner strides the extent has on it, for input `index`."""
        result: dict[int, set[int]] = {}
        for axis, inner in self.axes[index]:
            result.setdefault(axis, set()).add(inner)
        return result


def _static(value_type, what: str) -> tuple[int, ...]:
    if not isinstance(value_type, TensorType) or not value_type.is_static:
        raise ExtentProblem(f"{what} has no static shape ({value_type}) at the bound")
    return tuple(value_type.shape)


def aligned(op: Op, indices, out_shape: tuple[int, ...] | None = None) -> Axes:
    """The extent of inputs `indices` broadcast (right-aligned) to the output shape."""
    out_shape = op.out_shape if out_shape is None else out_shape
    result = set()
    for index in indices:
        shape = op.shape(index)
        shift = len(out_shape) - len(shape)
        for axis, inner in op.axes[index]:
            if shape[axis] != out_shape[axis + shift]:
                raise ExtentProblem(f"input {index} broadcasts the dynamic dim (shape {list(shape)}) into "
                                    f"{list(out_shape)}")
            result.add((axis + shift, inner))
    return frozenset(result)


def reshaped(axes: Axes, shape, new_shape, bound: int) -> Axes:
    """The extent after a reshape: the output axis whose elements hold the dim's positions whole."""
    result = set()
    for axis, inner in axes:
        flat = inner * math.prod(shape[axis + 1:])
        for target in range(len(new_shape)):
            stride = math.prod(new_shape[target + 1:])
            if flat % stride == 0 and (stride * new_shape[target]) % (flat * bound) == 0:
                result.add((target, flat // stride))
                break
        else:
            raise ExtentProblem(f"it splits the dynamic dim across axes ({list(shape)} -> {list(new_shape)})")
    return frozenset(result)


def _no_extent_in(op: Op, indices, what: str) -> None:
    for index in indices:
        if index < len(op.axes) and op.axes[index]:
            raise ExtentProblem(f"its {what} (input {index}) depends on the dynamic dim")


def _elementwise(op: Op) -> Effect:
    return Effect([aligned(op, range(len(op.axes)))] * len(op.node.outputs))


def _view(op: Op) -> Effect:
    _no_extent_in(op, range(1, len(op.axes)), "shape")
    return Effect([reshaped(op.axes[0], op.shape(0), op.out_shape, op.bound)])


def _transpose(op: Op) -> Effect:
    perm = list(op.node.attrs.get("perm", reversed(range(len(op.shape(0))))))
    return Effect([frozenset((perm.index(axis), inner) for axis, inner in op.axes[0])])


def _contraction(op: Op, a: int, a_k: int, b: int, b_k: int) -> list[Mask]:
    """Masks for a product summing input a's axis a_k against input b's axis b_k: both read 0 past s."""
    a_inner, b_inner = op.carried(a).get(a_k, set()), op.carried(b).get(b_k, set())
    if a_inner != b_inner:
        raise ExtentProblem("it contracts the dynamic dim of one operand against a dim of fixed size")
    return [Mask(index, axis, inner, 0.0) for inner in sorted(a_inner) for index, axis in ((a, a_k), (b, b_k))]


def _linear_base(op: Op, op_type: str, trans_a: bool = False, trans_b: bool = False) -> Effect:
    """MatMul (batched, right-aligned) or Gemm (2-D, transposes, C broadcast) on inputs 0 and 1 (and 2)."""
    rank_a, rank_b, out = len(op.shape(0)), len(op.shape(1)), op.out_shape
    if (rank_a < 2 and op.axes[0]) or (rank_b < 2 and op.axes[1]):
        raise ExtentProblem("a vector operand holds the dynamic dim")
    m_axis, k_axis = (rank_a - 1, rank_a - 2) if trans_a else (rank_a - 2, rank_a - 1)
    kb_axis, n_axis = (rank_b - 1, rank_b - 2) if trans_b else (rank_b - 2, rank_b - 1)
    result = set()
    for index, own, target, rank in ((0, m_axis, len(out) - 2, rank_a), (1, n_axis, len(out) - 1, rank_b)):
        for axis, inner in op.axes[index]:
            if axis == own:
                result.add((target, inner))
            elif axis < rank - 2:
                if op.shape(index)[axis] != out[axis + len(out) - rank]:
                    raise ExtentProblem("it broadcasts the dynamic dim over the batch of matrices")
                result.add((axis + len(out) - rank, inner))
    if op_type == "Gemm" and len(op.axes) > 2:
        result |= aligned(op, [2])
    columns = [Mask(1, n_axis, inner, 0.0) for axis, inner in sorted(op.axes[1]) if axis == n_axis]
    return Effect([frozenset(result)], _contraction(op, 0, k_axis, 1, kb_axis) + columns)


def _linear(op: Op) -> Effect:
    node = op.node
    if node.op_type in PER_IMAGE or FUSED_LINEAR.get(node.op_type, ("",))[0] == "Conv":
        return _per_image(op)
    op_type, count = FUSED_LINEAR.get(node.op_type, (node.op_type, len(op.axes)))
    effect = _linear_base(op, op_type, bool(node.attrs.get("transA", 0)), bool(node.attrs.get("transB", 0)))
    if node.domain == KILN_DOMAIN:
        effect.outputs = [effect.outputs[0] | aligned(op, range(count, len(op.axes)))]
    return effect


def _softmax(op: Op) -> Effect:
    node, rank = op.node, len(op.shape(0))
    base_inputs = 0
    if node.op_type in FUSED_NORMALIZATION:
        base_inputs = FUSED_NORMALIZATION[node.op_type][1]
        x_axes = aligned(op, range(base_inputs, len(op.axes)))
        if node.attrs.get("prologue"):
            if any(axis == op.axis(rank, -1) for axis, _ in x_axes):
                raise ExtentProblem("its fused prologue computes the softmax input after the dynamic dim's mask")
            return Effect([x_axes])
    x_axes = op.axes[base_inputs]
    axis = op.axis(rank, -1 if (node.version or 13) >= 13 else 1)
    if (node.version or 13) < 13 and axis != rank - 1 and any(a >= axis for a, _ in x_axes):
        raise ExtentProblem("before opset 13 it flattens the dynamic dim with the axes after it")
    masks = [Mask(base_inputs, axis, inner, -math.inf) for a, inner in sorted(x_axes) if a == axis]
    return Effect([x_axes], masks)


def _layer_normalization(op: Op) -> Effect:
    node = op.node
    if node.op_type in FUSED_NORMALIZATION:
        count = FUSED_NORMALIZATION[node.op_type][1]
        _no_extent_in(op, range(count), "scale or bias")
        x_axes = aligned(op, range(count, len(op.axes)))
    else:
        _no_extent_in(op, range(1, len(op.axes)), "scale or bias")
        x_axes = op.axes[0]
    rank = len(op.out_shape)
    if any(axis >= op.axis(rank, -1) for axis, _ in x_axes):
        raise ExtentProblem("it normalizes over the dynamic dim")
    return Effect([x_axes] * len(node.outputs))


def _per_image(op: Op) -> Effect:
    """Conv, pooling, BatchNormalization, ...: images (axis 0) are independent, nothing else is."""
    _no_extent_in(op, range(1, len(op.axes)), "weight or statistic")
    if any(axis != 0 for axis, _ in op.axes[0]):
        raise ExtentProblem("it works across the dynamic dim (it may only be in the images' axis 0)")
    return Effect([op.axes[0]] * len(op.node.outputs))


def _kept(axes: Axes, removed: set[int], keepdims: bool) -> Axes:
    if keepdims:
        return frozenset((a, inner) for a, inner in axes if a not in removed)
    return frozenset((a - sum(1 for r in removed if r < a), inner) for a, inner in axes if a not in removed)


def _reduction(op: Op) -> Effect:
    node, rank = op.node, len(op.shape(0))
    axes = node.attrs.get("axes")
    if axes is None and len(op.axes) > 1:
        _no_extent_in(op, [1], "axes")
        constant = op.constant(1)
        if constant is None and op.graph.input_values(node)[1] is not None:
            raise ExtentProblem("its axes are computed at run time")
        axes = None if constant is None else constant.ravel().tolist()
    if not axes and node.attrs.get("noop_with_empty_axes", 0):
        return Effect([op.axes[0]])
    reduced = set(range(rank)) if not axes else {int(a) % rank for a in axes}
    masks = [Mask(0, a, inner, REDUCTION_FILLS.get(node.op_type)) for a, inner in sorted(op.axes[0]) if a in reduced]
    if masks and node.op_type not in REDUCTION_FILLS:
        raise ExtentProblem(f"{node.op_type} over the dynamic dim would count the padding; use a ReduceSum and "
                            "divide by the length in the model, or compile static parts with specialize=")
    return Effect([_kept(op.axes[0], reduced, bool(node.attrs.get("keepdims", 1)))], masks)


def _arg_extreme(op: Op) -> Effect:
    node, rank = op.node, len(op.shape(0))
    axis = op.axis(rank, 0)
    fill = -math.inf if node.op_type == "ArgMax" else math.inf
    masks = [Mask(0, axis, inner, fill) for a, inner in sorted(op.axes[0]) if a == axis]
    return Effect([_kept(op.axes[0], {axis}, bool(node.attrs.get("keepdims", 1)))], masks)


def _cumsum(op: Op) -> Effect:
    """A running sum along the dim reads only earlier positions, unless it runs in reverse."""
    axis = op.constant(1)
    _no_extent_in(op, [1], "axis")
    along = axis is None or any(a == int(axis) % len(op.shape(0)) for a, _ in op.axes[0])
    if along and op.node.attrs.get("reverse", 0):
        raise ExtentProblem("it sums the dynamic dim in reverse, from the padding")
    return Effect([op.axes[0]])


def _gather(op: Op) -> Effect:
    rank = len(op.shape(0))
    axis = op.axis(rank, 0)
    indices_rank = len(op.shape(1))
    result = {(axis + a, inner) for a, inner in op.axes[1]}
    for a, inner in op.axes[0]:
        if a < axis:
            result.add((a, inner))
        elif a > axis:
            result.add((a + indices_rank - 1, inner))
        else:
            indices = op.constant(1)
            if indices is None or inner != 1 or not np.all((indices >= 0) & (indices < op.low)):
                raise ExtentProblem("it gathers along the dynamic dim (only constant indices below the dim's "
                                    "lower bound can be gathered there)")
    return Effect([frozenset(result)])


def _along_axis(op: Op) -> Effect:
    """Concat and Split: anything but the dim's axis."""
    rank = len(op.shape(0))
    axis = op.axis(rank, 0)
    if op.node.op_type == "Split":
        _no_extent_in(op, [1], "split sizes")
        indices = [0]
    else:
        indices = range(len(op.axes))
    combined = frozenset().union(*(op.axes[index] for index in indices))  # inputs of one rank, equal but on axis
    if any(a == axis for a, _ in combined):
        raise ExtentProblem(f"it {'splits' if op.node.op_type == 'Split' else 'joins'} along the dynamic dim")
    return Effect([combined] * len(op.node.outputs))


def _keeps_dim(op: Op) -> Effect:
    """Slice, Pad, Tile, Expand: fine while they leave the dim's axis as it is."""
    _no_extent_in(op, range(1, len(op.axes)), "parameters")
    shape, out = op.shape(0), op.out_shape
    if op.node.op_type == "Expand":
        return Effect([aligned(op, [0])])
    for axis, _ in op.axes[0]:
        if shape[axis] != out[axis]:
            raise ExtentProblem(f"{op.node.op_type} changes the dynamic dim's axis {axis}")
    if op.node.op_type == "Slice":
        starts, steps = op.constant(1), op.constant(4)
        axes = op.constant(3)
        axes = range(len(starts)) if axes is None and starts is not None else axes
        sliced = {int(a) % len(shape): (int(s), 1 if steps is None else int(steps[i]))
                  for i, (a, s) in enumerate(zip(axes, starts))} if starts is not None else None
        if sliced is None or any(sliced.get(a, (0, 1)) != (0, 1) for a, _ in op.axes[0]):
            raise ExtentProblem("it slices along the dynamic dim")
    return Effect([op.axes[0]])


def _shape_only(op: Op) -> Effect:
    return Effect([NONE] * len(op.node.outputs))


def _mask(op: Op) -> Effect:
    return Effect([op.axes[0]])


_RULES: dict[str, Callable[[Op], Effect]] = {
    **{name: _elementwise for name in ELEMENTWISE | ELEMENTWISE_KILN | {"Dropout"}},
    **{name: _view for name in VIEWS}, "Transpose": _transpose,
    **{name: _linear for name in ("MatMul", "Gemm", *FUSED_LINEAR)},
    **{name: _softmax for name in (*SOFTMAXES, "FusedSoftmax")},
    "LayerNormalization": _layer_normalization, "FusedLayerNormalization": _layer_normalization,
    **{name: _per_image for name in PER_IMAGE if name != "Conv"}, "Conv": _linear,
    **{name: _reduction for name in REDUCTIONS}, "ArgMax": _arg_extreme, "ArgMin": _arg_extreme,
    "CumSum": _cumsum, "Gather": _gather, "Concat": _along_axis, "Split": _along_axis,
    **{name: _keeps_dim for name in ("Slice", "Pad", "Tile", "Expand")},
    "Shape": _shape_only, "Size": _shape_only, MASK_OP: _mask,
}


def _is_mask(node: Node, mask: Mask) -> bool:
    return node.domain == KILN_DOMAIN and node.op_type == MASK_OP and \
        (node.attrs["axis"], node.attrs["inner"], node.attrs["fill"]) == (mask.axis, mask.inner, mask.fill)


def is_masked(graph: Graph, value: Value, mask: Mask) -> bool:
    """Whether `value` already reads `mask.fill` past s along the mask's axis: it is such a MaskTail's
    output, or (fill 0) a Softmax over that axis of a -inf-masked input, exactly 0 there."""
    producer = graph.node(value.node)
    if _is_mask(producer, mask):
        return True
    if mask.fill != 0.0 or producer.domain != "" or producer.op_type != "Softmax":
        return False
    rank = len(producer.outputs[0].shape)
    axis = int(producer.attrs.get("axis", -1)) % rank
    source = graph.input_values(producer)[0]
    return axis == mask.axis and (producer.version or 13) >= 13 and \
        is_masked(graph, source, Mask(0, mask.axis, mask.inner, float("-inf")))


def rule_for(node: Node) -> Callable[[Op], Effect] | None:
    if node.domain not in ("", KILN_DOMAIN):
        return None
    if node.domain == KILN_DOMAIN and node.op_type not in (*ELEMENTWISE_KILN, *FUSED_LINEAR, *FUSED_NORMALIZATION,
                                                           MASK_OP):
        return None
    return _RULES.get(node.op_type)


def propagate(graph: Graph, inputs: dict[str, int], bound: int, low: int,
              on_masks: Callable[[Node, list[Mask]], None]) -> dict[Value, Axes]:
    """value -> its extent (for those holding it), from `inputs` (name -> axis); `on_masks(node, masks)`
    sees the masks each node needs. Raises ExtentProblem naming the first node that cannot run."""
    axes: dict[Value, Axes] = {Value(name): frozenset({(axis, 1)}) for name, axis in inputs.items()}
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
            effect = rule(Op(graph, node, in_axes, bound, low))
        except ExtentProblem as problem:
            raise ExtentProblem(f"node {node.name!r} ({node.qualified_op}) cannot run with a dynamic dim padded to "
                                f"its bound: {problem}. Compile one part per size with specialize= instead") from None
        if effect.masks:
            on_masks(node, effect.masks)
        for index, value_axes in enumerate(effect.outputs):
            if value_axes:
                axes[Value(node.name, index)] = value_axes
    return axes
