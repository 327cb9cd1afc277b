"""kiln::FusedConv, kiln::FusedGemm, kiln::FusedMatMul: a Conv, Gemm or MatMul with an elementwise epilogue.

The fuse-epilogues pass (compiler/passes/fuse_epilogues.py) builds them so that the bias, the
activation and a residual Add are applied to each output before it is stored, instead of in
passes over the whole tensor. Inputs: the base op's inputs in their positions (an absent
optional one is None: Conv has 3, Gemm 3, MatMul 2), then the epilogue's other operands.
Attributes: the base op's own, plus
- `epilogue`: the steps, encoded as fused_elementwise's `steps`. Operand 0 is the base op's
  result, 1.. the inputs after the base op's, then the results of earlier steps; the last
  step gives the node's output.
- `activation`: names the epilogue's non-arithmetic steps ("Relu", "Clip", "Erf+Tanh"..., "" for
  none), for people reading a dump or a profile.
- `fused_nodes`: the original nodes' names, base op first, so profiles map back to them.
- `transposed_weights` (FusedConv, optional): 1 when input 1 holds the weights transposed in
  blocks of output channels, [M / B, C/group * kernel taps, B] (block b is the transpose of rows
  b*B.. of W reshaped to [M, C/group * taps]): the cpu kernel loads vectors along the output
  channels, each work item's weights contiguous. `kernel_shape` then gives W's spatial dims and
  `out_channels` its M: the blocks may hold zero weights past it, M rounded up to whole blocks.
- `packed_weights` (FusedGemm, FusedMatMul, optional): P > 0 when input 1 holds the [K, N] matrix
  that the product reads (B, or B's transpose under Gemm's transB) as panels [N / P, K', P]: panel s
  is columns s*P.. over every k, zero past N and past K (K' is K rounded up to whole vectors). The
  GEMM kernel's register tiles read them as they are, so B is not packed again at run time
  (compiler/passes/pack_gemm_weights.py). `weights_shape` then gives B's own shape.

Inference and reference semantics are the base op's, then each step's own, so the ref target
and fold-constants compute exactly what the unfused nodes did.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ir.types import TensorType
from compiler.ops.fused_elementwise import steps_of, value_types
from compiler.ops.registry import OpDef, lookup, register

BASES = {"FusedConv": ("Conv", 3), "FusedGemm": ("Gemm", 3), "FusedMatMul": ("MatMul", 2)}
"""Fused op type -> (base op type, number of base op inputs)."""
FUSION_ATTRIBUTES = ("epilogue", "activation", "fused_nodes", "transposed_weights", "out_channels", "packed_weights",
                     "weights_shape")


def base_node(node: Node) -> Node:
    """The base op alone (its attributes and inputs), under the fused node's name."""
    op_type, count = BASES[node.op_type]
    attrs = {key: value for key, value in node.attrs.items() if key not in FUSION_ATTRIBUTES}
    return Node(node.name, op_type, "", node.version, attrs, count, [None], list(node.output_names))


def epilogue_steps(node: Node):
    """The epilogue as fused_elementwise Steps (their operands number the base result, the extra inputs, ...)."""
    return steps_of(_as_elementwise(node))


def epilogue_types(node: Node, base_type, extra_types: list) -> list:
    """Types of every value the epilogue numbers: the base result, the extra inputs, each step's result."""
    return value_types(_as_elementwise(node), [base_type, *extra_types])


def _as_elementwise(node: Node) -> Node:
    return Node(node.name, "FusedElementwise", KILN_DOMAIN, None, {"steps": node.attrs["epilogue"]})


def transposed_weights(weights: np.ndarray, block: int) -> np.ndarray:
    """W [M, C/group, *kernel] in the layout of `transposed_weights`, blocks of `block` channels (zero
    weights past M in the last block): the panels of W's transpose."""
    return packed_weights(weights.reshape(weights.shape[0], -1).T, block, 1)


def packed_weights(matrix: np.ndarray, columns: int, depth_multiple: int) -> np.ndarray:
    """The [K, N] `matrix` in the layout of `packed_weights`: panels of `columns` columns, K rounded up to
    `depth_multiple` rows; zeros past the matrix."""
    depth, width = matrix.shape
    panels = -(-width // columns)
    padded = np.zeros((-(-depth // depth_multiple) * depth_multiple, panels * columns), matrix.dtype)
    padded[:depth, :width] = matrix
    return np.ascontiguousarray(padded.reshape(padded.shape[0], panels, columns).transpose(1, 0, 2))


def weights_shape(node: Node, shape: tuple) -> tuple:
    """The shape of a fused node's input 1 as its base op reads it, when it holds an array of `shape`
    (laid out or not): W [M, C/group, *kernel] of a conv, B of a Gemm or MatMul."""
    if node.attrs.get("packed_weights", 0):
        return tuple(node.attrs["weights_shape"])
    if not node.attrs.get("transposed_weights", 0):
        return tuple(shape)
    blocks, taps, block = shape
    kernel = tuple(node.attrs["kernel_shape"])
    return (node.attrs.get("out_channels", blocks * block), taps // math.prod(kernel), *kernel)


def _split(node: Node, items: list, untranspose) -> tuple[list, list]:
    """(base op inputs, epilogue inputs); transposed weights are turned back by `untranspose(weights, node)`."""
    count = BASES[node.op_type][1]
    base = list(items[:count])
    if (node.attrs.get("transposed_weights", 0) or node.attrs.get("packed_weights", 0)) and base[1] is not None:
        base[1] = untranspose(base[1], node)
    return base, items[count:]


def _weights_type(value_type: TensorType, node: Node) -> TensorType:
    return TensorType(value_type.dtype, weights_shape(node, value_type.shape))


def untransposed_weights(value: np.ndarray, node: Node) -> np.ndarray:
    """Input 1 of a fused node as its base op reads it, from its laid-out form."""
    shape = weights_shape(node, value.shape)
    panels, depth, columns = value.shape
    matrix = value.transpose(1, 0, 2).reshape(depth, panels * columns)
    if not node.attrs.get("packed_weights", 0):  # W's transpose, channels past M padded
        return np.ascontiguousarray(matrix[:, :shape[0]].T).reshape(shape)
    transposed = node.attrs.get("transB", 0)
    rows, width = shape[::-1] if transposed else shape
    matrix = matrix[:rows, :width]
    return np.ascontiguousarray(matrix.T if transposed else matrix)


def _present(value: bool, node: Node) -> bool:
    return value


def _infer(node: Node, input_types: list, input_values: list) -> list:
    base = base_node(node)
    base_types, extra_types = _split(node, input_types, _weights_type)
    if any(t is None for t in extra_types):
        return [None]
    base_type = lookup(base.op_type).infer(base, base_types, _split(node, input_values, untransposed_weights)[0])[0]
    return [None if base_type is None else epilogue_types(node, base_type, extra_types)[-1]]


def epilogue_kernel(node: Node, base_type, extra_types: list):
    """The numpy epilogue of a fused node: (base result, extra input values) -> its output."""
    types = epilogue_types(node, base_type, extra_types)
    steps = epilogue_steps(node)
    kernels = [lookup(step.node.op_type).kernel(step.node,
                                                [None if ref is None else types[ref] for ref in step.operands],
                                                [ref is not None for ref in step.operands])
               for step in steps]

    def apply(result, extras: list):
        values = [result, *extras]
        for step, step_kernel in zip(steps, kernels):
            values.append(step_kernel([None if ref is None else values[ref] for ref in step.operands])[0])
        return values[-1]

    return apply


def _kernel(node: Node, input_types: list, present: list):
    base = base_node(node)
    base_types, extra_types = _split(node, input_types, _weights_type)
    base_kernel = lookup(base.op_type).kernel(base, base_types, _split(node, present, _present)[0])
    base_type = lookup(base.op_type).infer(base, base_types, [None] * len(base_types))[0]
    epilogue = epilogue_kernel(node, base_type, extra_types)

    def kernel(inputs: list) -> list:
        base_inputs, extras = _split(node, inputs, untransposed_weights)
        return [epilogue(base_kernel(base_inputs)[0], extras)]

    return kernel


for _op_type in BASES:
    register(OpDef(_op_type, KILN_DOMAIN, "fused", _infer, _kernel))
