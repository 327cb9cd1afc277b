"""Per-op lowering to GNA layers, keyed by op type: `check` says why a node cannot be lowered (static
facts: constant weights, attributes, ranks), `lower` emits its layers into a `Lowering`.

MatMul/Gemm -> AFFINE (rows in chunks of 8 frames); Conv over [1, C, L] -> CONV1D, over [1, C, H, W]
-> CONV2D (GNA3.0); MaxPool likewise -> MAXPOOL (2-D on GNA3.0); Mul/Add/Sub/Div by a constant ->
DIAGONAL; an activation not fused onto a weighted layer -> DIAGONAL (weight 1) with its PWL;
Reshape/Flatten/Squeeze/Unsqueeze/Transpose/Split/Slice -> no layer (the element map changes);
Concat -> COPY per part (movement.py); GRU (gru.py), RNN and LSTM (recurrent.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from compiler.codegen.gna.layers import Affine, Conv1D, Conv2D, MaxPool
from compiler.codegen.gna.lowering import (ACTIVATION_OPS, Fusion, GnaLoweringError, Lowering, Tensor, pad8)
from compiler.codegen.gna.gru import lower_gru
from compiler.codegen.gna.movement import check_concat, check_slice, lower_concat, lower_slice
from compiler.codegen.gna.quantize import quantize_bias
from compiler.codegen.gna.recurrent import check_recurrent, lower_lstm, lower_rnn
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType

MAX_FRAMES = 8
MAX_FILTERS = 65532


@dataclass(frozen=True)
class OpLowering:
    check: Callable[[Graph, Node], str | None]
    lower: Callable[[Lowering, Node], None]


_TABLE: dict[str, OpLowering] = {}


def _lowers(*ops: str, check=lambda graph, node: None):
    def register(fn):
        for op in ops:
            _TABLE[op] = OpLowering(check, fn)
        return fn
    return register


def lowering_for(node: Node) -> OpLowering:
    return _TABLE[node.op_type]


def node_problem(graph: Graph, node: Node, generation: str = "GNA2.0") -> str | None:
    """Why the gna target cannot lower `node` for `generation` (None when it can)."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in _TABLE:
        return f"no GNA lowering for {node.qualified_op} (the GNA ISA has affine, convolution, diagonal, pooling, " \
               "PWL activation, copy and transpose layers)"
    for value, value_type in zip(graph.input_values(node), graph.input_types(node)):
        if value is None or graph.constant_value(value) is not None:
            continue
        if not isinstance(value_type, TensorType) or not value_type.is_static:
            return f"input type {value_type} is not a static tensor: give static input shapes"
        if value_type.dtype != "float32":
            return f"input dtype {value_type.dtype}: the GNA target quantizes float32 tensors only"
        if len(value_type.shape) > 4:
            return f"input of rank {len(value_type.shape)}: GNA tensors have rank 1 to 4"
    return _TABLE[node.op_type].check(graph, node) or _generation_problem(graph, node, generation)


def _generation_problem(graph: Graph, node: Node, generation: str) -> str | None:
    if generation == "GNA2.0" and node.op_type in ("Conv", "MaxPool") and len(_shape(graph, node)) == 4:
        layer = "CONV2D layer" if node.op_type == "Conv" else "2-D MAXPOOL"
        return f"a 2-D {node.op_type} over {list(_shape(graph, node))} is the {layer} of generation GNA3.0, " \
               "which GNA2.0 lacks; compile with generation='GNA3.0'"
    return None


def _constant(graph: Graph, node: Node, index: int) -> np.ndarray | None:
    values = graph.input_values(node)
    return None if index >= len(values) else graph.constant_value(values[index])


def _shape(graph: Graph, node: Node, index: int = 0) -> tuple:
    return tuple(graph.input_types(node)[index].shape)


# ----- AFFINE --------------------------------------------------------------------------
def _check_gemm(graph: Graph, node: Node) -> str | None:
    if node.attrs.get("transA", 0):
        return "transA=1: the GNA affine layer reads its input as frames; transpose the input in the model"
    bias = _constant(graph, node, 2)
    if bias is not None and bias.size > 1 and bias.size != bias.shape[-1]:
        return f"bias of shape {list(bias.shape)}: a GNA affine layer adds one bias per output, the same every frame"
    return _check_weight_matrix(graph, node)


def _check_weight_matrix(graph: Graph, node: Node) -> str | None:
    weights = _constant(graph, node, 1)
    if weights is None or weights.ndim != 2:
        return "the weights (input 1) must be a constant matrix: GNA affine layers multiply by stored weights"
    if node.op_type == "Gemm" and len(graph.input_values(node)) > 2 and graph.input_values(node)[2] is not None \
            and _constant(graph, node, 2) is None:
        return "the bias (input 2) must be a constant"
    if len(_shape(graph, node)) < 2:
        return f"input of shape {list(_shape(graph, node))}: the affine layer needs [frames, features]"
    return None


def _frames(node: Node, tensor: Tensor, features: int) -> tuple[np.ndarray, int]:
    """The input's element index per feature (common to all frames) and the frame stride."""
    where = tensor.where.reshape(-1, features)
    gather = where[0]
    stride = int(where[1, 0] - where[0, 0]) if len(where) > 1 else pad8(gather.max() + 1)
    if stride % 8 or stride <= gather.max() or not np.array_equal(
            where, gather[None, :] + np.arange(len(where))[:, None] * stride):
        raise GnaLoweringError(f"node {node.name!r} ({node.op_type}): its input {list(tensor.where.shape)} is not "
                               "laid out as frames a constant stride apart; put a layer that writes rows before it")
    return gather, stride


def _affine(state: Lowering, node: Node, weights: np.ndarray, bias: np.ndarray) -> None:
    """y = x @ weights + bias over the frames of x (weights [K, N] float)."""
    tensor = state.tensor(node)
    features, outputs = weights.shape
    gather, stride = _frames(node, tensor, features)
    frames = tensor.where.size // features
    padded = pad8(outputs)
    fusion = state.fusion(node, lambda c: c.size in (1, outputs) and (c.ndim == 0 or c.shape[-1] == c.size))
    extra = state.bias_of(fusion)
    bias = bias + (np.broadcast_to(extra, (outputs,)) if extra is not None else 0.0)
    matrix = np.zeros((padded, stride))
    matrix[:outputs, gather] = weights.T
    quantized = state.weights_for(matrix, tensor.scale, node, fusion)
    table, dtype, out_scale = state.output_stage(node, fusion, tensor.scale, quantized.scale)
    acc_scale = tensor.scale * quantized.scale
    out = state.buffer(node.name, frames * padded, dtype)
    bias_int = quantize_bias(np.pad(bias, (0, padded - outputs)), acc_scale)
    itemsize = np.dtype(dtype).itemsize
    for first in range(0, frames, MAX_FRAMES):
        batch = min(MAX_FRAMES, frames - first)
        name = node.name if frames <= MAX_FRAMES else f"{node.name}[{first}:{first + batch}]"
        state.layers.append(Affine(name, tensor.buffer.at(first * stride * 2), out.at(first * padded * itemsize),
                                   quantized.values, bias_int, quantized.multipliers, table, out_scale, batch=batch))
    out_shape = state.graph.type_of(fusion.value).shape
    where = np.arange(frames)[:, None] * padded + np.arange(outputs)[None, :]
    state.finish(node, fusion, Tensor(out, where.reshape(out_shape), out_scale, dtype))


@_lowers("Gemm", check=_check_gemm)
def _gemm(state: Lowering, node: Node) -> None:
    weights = _constant(state.graph, node, 1).astype(np.float64) * node.attrs.get("alpha", 1.0)
    if node.attrs.get("transB", 0):
        weights = weights.T
    bias = _constant(state.graph, node, 2)
    outputs = weights.shape[1]
    bias = np.zeros(outputs) if bias is None else np.broadcast_to(
        bias.astype(np.float64).reshape(-1) * node.attrs.get("beta", 1.0), (outputs,))
    _affine(state, node, weights, bias)


@_lowers("MatMul", check=_check_weight_matrix)
def _matmul(state: Lowering, node: Node) -> None:
    weights = _constant(state.graph, node, 1).astype(np.float64)
    _affine(state, node, weights, np.zeros(weights.shape[1]))


# ----- CONV1D, CONV2D and MAXPOOL ----------------------------------------------------------
def _check_conv(graph: Graph, node: Node) -> str | None:
    shape, weights = _shape(graph, node), _constant(graph, node, 1)
    if len(shape) not in (3, 4) or shape[0] != 1:
        return f"input of shape {list(shape)}: GNA convolutions take [1, channels, length] (CONV1D) or " \
               "[1, channels, height, width] (CONV2D, GNA3.0)"
    if weights is None:
        return "the weights (input 1) must be a constant"
    if node.attrs.get("group", 1) != 1:
        return f"group={node.attrs['group']}: GNA convolutions are dense (group 1)"
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return f"auto_pad={node.attrs['auto_pad']}: give explicit pads"
    if len(graph.input_values(node)) > 2 and graph.input_values(node)[2] is not None and \
            _constant(graph, node, 2) is None:
        return "the bias (input 2) must be a constant"
    if pad8(weights.shape[0]) > MAX_FILTERS:
        return f"{weights.shape[0]} filters: GNA convolutions take at most {MAX_FILTERS}"
    return None


@_lowers("Conv", check=_check_conv)
def _conv(state: Lowering, node: Node) -> None:
    """CONV1D over [length, channels] or CONV2D over [height, width, channels] rows (channels padded to 8 where
    the filter size kernel · channels would not be a multiple of 8)."""
    graph = state.graph
    _, channels, *spatial = _shape(graph, node)
    problem = _generation_problem(graph, node, state.generation)
    if problem:
        raise GnaLoweringError(f"node {node.name!r} (Conv): {problem}")
    weights = _constant(graph, node, 1).astype(np.float64)
    filters, kernel = weights.shape[0], weights.shape[2:]
    bias = _constant(graph, node, 2)
    bias = np.zeros(filters) if bias is None else bias.astype(np.float64)
    pad_channels = (channels * int(np.prod(kernel))) % 8 != 0
    tensor, padded_channels = state.channels_last(node, state.tensor(node), channels, int(np.prod(spatial)),
                                                  pad_channels)
    fusion = state.fusion(node, lambda c: c.size == 1 or (c.size == filters and c.ndim >= 2 and
                                                          all(d == 1 for d in c.shape[-len(spatial):])
                                                          and c.shape[-len(spatial) - 1] == filters))
    fusion = Fusion(fusion.bias, fusion.activation, fusion.value, False)  # [..., filters] rows: int16 out
    extra = state.bias_of(fusion)
    if extra is not None:
        bias = bias + np.broadcast_to(extra.reshape(-1), (filters,))
    padded = pad8(filters)
    stored = np.zeros((padded, *kernel, padded_channels))
    stored[:filters, ..., :channels] = np.moveaxis(weights, 1, -1)
    quantized = state.weights_for(stored, tensor.scale, node, fusion)
    table, dtype, out_scale = state.output_stage(node, fusion, tensor.scale, quantized.scale)
    acc_scale = tensor.scale * quantized.scale
    out_spatial = tuple(graph.node(node.name).outputs[0].shape[2:])
    out_elements = int(np.prod(out_spatial))
    out = state.buffer(node.name, out_elements * padded, dtype)
    pads = node.attrs.get("pads", [0] * 2 * len(spatial))
    strides = node.attrs.get("strides", [1] * len(spatial))
    dilations = node.attrs.get("dilations", [1] * len(spatial))
    common = (node.name, tensor.buffer, out, quantized.values,
              quantize_bias(np.pad(bias, (0, padded - filters)), acc_scale), quantized.multipliers, table, out_scale)
    if len(spatial) == 1:
        layer = Conv1D(*common, length=spatial[0], stride=strides[0], dilation=dilations[0], pad=(pads[0], pads[1]))
    else:
        layer = Conv2D(*common, height=spatial[0], width=spatial[1], stride=tuple(strides), dilation=tuple(dilations),
                       pads=(pads[0], pads[1], pads[2], pads[3]))
    state.layers.append(layer)
    where = np.arange(filters)[:, None] + np.arange(out_elements)[None, :] * padded
    state.finish(node, fusion, Tensor(out, where.reshape(1, filters, *out_spatial), out_scale, dtype))


def _check_maxpool(graph: Graph, node: Node) -> str | None:
    shape = _shape(graph, node)
    if len(shape) not in (3, 4) or shape[0] != 1:
        return f"input of shape {list(shape)}: GNA max pooling takes [1, channels, length] or [1, channels, " \
               "height, width] (GNA3.0)"
    if any(node.attrs.get("pads", [0])) or node.attrs.get("ceil_mode", 0) or \
            any(d != 1 for d in node.attrs.get("dilations", [1])) or len(node.outputs) > 1:
        return "pads, ceil_mode, dilations and the Indices output have no GNA MAXPOOL equivalent"
    return None


@_lowers("MaxPool", check=_check_maxpool)
def _maxpool(state: Lowering, node: Node) -> None:
    """MAXPOOL over [length, channels] rows (height 1) or, on GNA3.0, [height, width, channels] rows."""
    _, channels, *spatial = _shape(state.graph, node)
    problem = _generation_problem(state.graph, node, state.generation)
    if problem:
        raise GnaLoweringError(f"node {node.name!r} (MaxPool): {problem}")
    height, width = ([1] + spatial)[-2:]
    tensor, padded = state.channels_last(node, state.tensor(node), channels, height * width, len(spatial) == 2)
    window = ([1] + list(node.attrs["kernel_shape"]))[-2:]
    stride = ([1] + list(node.attrs.get("strides", [1] * len(spatial))))[-2:]
    out_spatial = tuple(node.outputs[0].shape[2:])
    out_elements = int(np.prod(out_spatial))
    out = state.buffer(node.name, out_elements * padded)
    state.layers.append(MaxPool(node.name, tensor.buffer, out, height=height, width=width, channels=padded,
                                window=tuple(window), stride=tuple(stride)))
    where = np.arange(channels)[:, None] + np.arange(out_elements)[None, :] * padded
    state.tensors[Value(node.name, 0)] = Tensor(out, where.reshape(1, channels, *out_spatial), tensor.scale)


# ----- DIAGONAL ---------------------------------------------------------------------------
def _check_elementwise(graph: Graph, node: Node) -> str | None:
    constants = [graph.constant_value(v) is not None for v in graph.input_values(node)]
    if constants.count(True) != 1 or (node.op_type in ("Sub", "Div") and not constants[1]):
        return f"{node.op_type} of two run-time tensors: the GNA diagonal layer scales and shifts by constants only"
    data = constants.index(False)
    if tuple(graph.input_types(node)[data].shape) != tuple(node.outputs[0].shape):
        return "the constant broadcasts the tensor to a larger shape; GNA layers keep the element count"
    return None


@_lowers("Mul", "Add", "Sub", "Div", check=_check_elementwise)
def _elementwise(state: Lowering, node: Node) -> None:
    values = state.graph.input_values(node)
    index = 0 if state.constant(values[0]) is None else 1
    constant = state.constant(values[1 - index])
    scale, shift = {"Mul": (constant, 0.0), "Div": (1.0 / constant, 0.0), "Add": (1.0, constant),
                    "Sub": (1.0, -constant)}[node.op_type]
    tensor = state.tensor(node, index)
    fusion = state.fusion(node, lambda c: False)
    fusion = Fusion(None, fusion.activation, fusion.value, fusion.int32 and tensor.rows() is not None)
    state.finish(node, fusion, state.diagonal(node, tensor, scale, shift, fusion))


def _check_activation(graph: Graph, node: Node) -> str | None:
    values = graph.input_values(node)
    if node.op_type == "Clip" and any(v is not None and graph.constant_value(v) is None for v in values[1:]):
        return "Clip bounds must be constants for a PWL table"
    if node.op_type == "Pow" and (graph.constant_value(values[1]) is None or graph.constant_value(values[1]).size != 1):
        return "Pow needs a constant scalar exponent for a PWL table"
    return None


@_lowers(*sorted(ACTIVATION_OPS), check=_check_activation)
def _activation(state: Lowering, node: Node) -> None:
    fusion = Fusion(None, node, Value(node.name, 0), False)
    state.finish(node, fusion, state.diagonal(node, state.tensor(node), 1.0, 0.0, fusion))


# ----- recurrent layers ----------------------------------------------------------------------
_lowers("RNN", check=check_recurrent)(lower_rnn)
_lowers("GRU", check=check_recurrent)(lower_gru)
_lowers("LSTM", check=check_recurrent)(lower_lstm)


# ----- element maps -------------------------------------------------------------------------
@_lowers("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
def _reshape(state: Lowering, node: Node) -> None:
    tensor = state.tensors[state.graph.input_values(node)[0]]
    state.tensors[Value(node.name, 0)] = Tensor(tensor.buffer, tensor.where.reshape(node.outputs[0].shape),
                                                tensor.scale, tensor.dtype)


@_lowers("Transpose")
def _transpose(state: Lowering, node: Node) -> None:
    tensor = state.tensors[state.graph.input_values(node)[0]]
    perm = node.attrs.get("perm") or list(reversed(range(tensor.where.ndim)))
    state.tensors[Value(node.name, 0)] = Tensor(tensor.buffer, tensor.where.transpose(perm), tensor.scale,
                                                tensor.dtype)


@_lowers("Split")
def _split(state: Lowering, node: Node) -> None:
    tensor = state.tensors[state.graph.input_values(node)[0]]
    axis = node.attrs.get("axis", 0) % tensor.where.ndim
    bounds = np.cumsum([t.shape[axis] for t in node.outputs])[:-1]
    for index, part in enumerate(np.split(tensor.where, bounds, axis=axis)):
        state.tensors[Value(node.name, index)] = Tensor(tensor.buffer, part, tensor.scale, tensor.dtype)


_lowers("Slice", check=check_slice)(lower_slice)
_lowers("Concat", check=check_concat)(lower_concat)
