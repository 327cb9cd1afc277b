"""Fuse QDQ patterns into kiln::QuantizedConv / kiln::QuantizedMatMul (compiler/ops/quantized_linear.py).

A QDQ graph (ours or onnxruntime.quantization.quantize_static's) computes a quantized layer in
float: DequantizeLinear(x_q) and DequantizeLinear(w_q) [+ DequantizeLinear(b_q)] -> Conv | MatMul |
Gemm [-> Add of a constant bias] [-> Relu | Clip] -> QuantizeLinear. This pass turns each into one int8 node: x_q stays 8-bit,
the weights are packed for the kernels at compile time, the bias and the input zero point's
correction (its product with each channel's weight sum) become one int32 offset, and the scales one
float32 multiplier per channel. A Relu or Clip becomes the clamp in the quantized domain (exact:
quantization is monotone). Without a QuantizeLinear after it the node gives float32.

What it takes: x per-tensor uint8/int8 with constant scale and zero point; weights constant int8,
symmetric (zero points 0), per tensor or per output channel (Conv axis 0, MatMul [K, N] axis 1,
Gemm transB=1 axis 0); a bias as a constant int32 DequantizeLinear or a float constant (rounded to
the accumulator's units, s_x * s_w[c], as quantizers do), and a float constant that an Add after
the op adds per output channel, rounded the same way; 2-D Conv; Gemm with transA=0, beta=1.
Anything else stays the float QDQ graph, which the other kernels run as it is.

ConvInteger / MatMulInteger with such weights (and a constant input zero point) become the same ops
with int32 outputs: exact, so always. Pre-quantized QLinearConv / QLinearMatMul nodes keep their
exact kernels (integer_linear.py) by default: the ONNX conformance tests check their rounding
(float64 requantization). `qlinear=True` (the cpu target sets it for compile(..., fast_qlinear=True))
routes those with constant symmetric int8 weights and constant scales to these kernels too (float32
requantization: within 1 LSB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.codegen.llvm.kernels.int8_isa import isa_for
from compiler.codegen.llvm.kernels.registry import kernel_for
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.quantized_linear import SHIFT, VECTOR_COLUMNS, pack_conv_weights, pack_matmul_weights, round_up
from compiler.passes.manager import PassContext, log, register_pass
from compiler.passes.sink_dequantize import remove_if_unused

EIGHT_BITS = {"uint8": (0, 255), "int8": (-128, 127)}
ACTIVATIONS = ("Relu", "Clip")


@dataclass(frozen=True)
class Quantization:
    """A per-tensor or per-channel (scale, zero point) pair read from constants."""

    value: Value  # the quantized tensor
    dtype: str
    scale: np.ndarray  # float64
    zero_point: np.ndarray  # int64


def _producer(graph: Graph, value: Value | None, op_type: str) -> Node | None:
    if value is None:
        return None
    node = graph.node(value.node)
    return node if node.domain == "" and node.op_type == op_type else None


def _parameters(graph: Graph, node: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, zero point) of a QuantizeLinear/DequantizeLinear with constant float32 ones, else None."""
    values = graph.input_values(node)
    scale = graph.constant_value(values[1])
    zero_point = graph.constant_value(values[2]) if len(values) > 2 and values[2] is not None else np.zeros((), int)
    if scale is None or zero_point is None or scale.dtype != np.float32 or node.attrs.get("block_size", 0):
        return None
    return scale.astype(np.float64).ravel(), zero_point.astype(np.int64).ravel()


def dequantized(graph: Graph, value: Value | None) -> Quantization | None:
    """How `value` is DequantizeLinear of an 8-bit tensor (per tensor or per channel), else None."""
    node = _producer(graph, value, "DequantizeLinear")
    parameters = node and _parameters(graph, node)
    if not parameters:
        return None
    source = graph.input_values(node)[0]
    dtype = graph.type_of(source).dtype
    return Quantization(source, dtype, *parameters) if dtype in (*EIGHT_BITS, "int32") else None


def _activation_clamp(graph: Graph, node: Node) -> tuple[float, float] | None:
    """The float interval a Relu or Clip (constant bounds) keeps; None for anything else."""
    if node.domain != "" or node.op_type not in ACTIVATIONS:
        return None
    if node.op_type == "Relu":
        return 0.0, np.inf
    values = graph.input_values(node)
    if node.version is not None and node.version < 11:
        return node.attrs.get("min", -np.inf), node.attrs.get("max", np.inf)
    bounds = []
    for index, default in ((1, -np.inf), (2, np.inf)):
        value = values[index] if index < len(values) else None
        array = default if value is None else graph.constant_value(value)
        if array is None:
            return None
        bounds.append(float(np.asarray(array)))
    return tuple(bounds)


@dataclass
class Match:
    """One Conv / MatMul / Gemm with everything the fused node needs."""

    linear: Node
    x: Quantization
    weights: np.ndarray  # int8, Conv [M, C/g, kh, kw] or MatMul [K, N]
    weight_scale: np.ndarray  # per output channel
    bias: np.ndarray | None  # per channel, in the accumulator's units (s_x * s_w[c] * alpha)
    alpha: float
    members: list[Node]  # the nodes replaced: linear op, [bias Add], [activation], [QuantizeLinear]
    clamp: tuple[float, float]
    output: tuple[np.ndarray, np.ndarray, str] | None  # (scale, zero point, dtype) of the QuantizeLinear
    integer: bool = False  # ConvInteger / MatMulInteger: int32 sums out


def _weights(graph: Graph, linear: Node, channels_axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    w = dequantized(graph, graph.input_values(linear)[1])
    array = w and graph.constant_value(w.value)
    if array is None or w.dtype != "int8" or np.any(w.zero_point):
        return None
    channels = array.shape[channels_axis]
    if w.scale.size == 1:
        return array, np.full(channels, w.scale[0])
    node = graph.node(graph.input_values(linear)[1].node)
    axis = node.attrs.get("axis", 1) % array.ndim
    return (array, w.scale) if axis == channels_axis and w.scale.size == channels else None


def _bias(graph: Graph, value: Value | None, unit: np.ndarray) -> np.ndarray | None | bool:
    """The bias in accumulator units (unit = s_x * s_w * alpha per channel), not yet rounded; None when absent,
    False when unusable."""
    if value is None:
        return None
    quantized = dequantized(graph, value)
    if quantized is not None:
        array = graph.constant_value(quantized.value)
        if array is None or np.any(quantized.zero_point):
            return False
        floats = array.astype(np.float64) * quantized.scale
    else:
        array = graph.constant_value(value)
        if array is None or array.dtype != np.float32:
            return False
        floats = array.astype(np.float64)
    if floats.size not in (1, unit.size):
        return False
    return np.broadcast_to(floats.ravel(), unit.shape) / unit


def _bias_add(graph: Graph, linear: Node, user: Node | None, channels: int) -> np.ndarray | None:
    """The float32 constant per output channel (or one value) that `user` adds to the linear op's output, if
    it is such an Add: a MatMul's bias as exporters write it (MatMul then Add), or a Conv's [C, 1, 1]."""
    if user is None or user.domain != "" or user.op_type != "Add":
        return None
    values = graph.input_values(user)
    mine = Value(linear.name)
    if values.count(mine) != 1:
        return None
    array = graph.constant_value(values[1] if values[0] == mine else values[0])
    rank = len(linear.outputs[0].shape)
    if array is None or array.dtype != np.float32 or array.ndim > rank:
        return None
    shape = (1,) * (rank - array.ndim) + array.shape
    axis = 1 if linear.op_type == "Conv" else rank - 1
    if any(size != 1 for i, size in enumerate(shape) if i != axis) or shape[axis] not in (1, channels):
        return None
    return array.astype(np.float64).ravel()


def _linear(graph: Graph, node: Node) -> tuple[tuple[np.ndarray, np.ndarray], Value | None, float] | None:
    """(weights as Conv [M, ...] or MatMul [K, N] and their scales, bias value, alpha) of a fusable linear op."""
    values = graph.input_values(node)
    if node.op_type == "Conv":
        weights = _weights(graph, node, 0)
        if weights is None or weights[0].ndim != 4:
            return None
        return weights, values[2] if len(values) > 2 else None, 1.0
    if node.op_type == "MatMul":
        weights = _weights(graph, node, 1)
        return None if weights is None or weights[0].ndim != 2 else (weights, None, 1.0)
    attrs = node.attrs
    if attrs.get("transA", 0) or attrs.get("beta", 1.0) != 1.0 or len(graph.type_of(values[0]).shape) != 2:
        return None
    transposed = attrs.get("transB", 0)
    weights = _weights(graph, node, 0 if transposed else 1)
    if weights is None:
        return None
    array, scale = weights
    return (array.T if transposed else array, scale), values[2] if len(values) > 2 else None, attrs.get("alpha", 1.0)


def _single_user(graph: Graph, node: Node) -> Node | None:
    value = Value(node.name)
    uses = graph.uses(value)
    if len(uses) != 1 or graph.is_graph_output(value):
        return None
    return graph.node(uses[0][0])


def match(graph: Graph, node: Node) -> Match | None:
    if node.domain != "" or node.op_type not in ("Conv", "MatMul", "Gemm") or len(node.outputs) != 1:
        return None
    types = [t for t in graph.input_types(node) if t is not None] + list(node.outputs)
    if not all(isinstance(t, TensorType) and t.is_static for t in types) or node.outputs[0].dtype != "float32":
        return None
    x = dequantized(graph, graph.input_values(node)[0])
    found = _linear(graph, node)
    if x is None or x.dtype not in EIGHT_BITS or x.scale.size != 1 or found is None:
        return None
    (weights, weight_scale), bias_value, alpha = found
    unit = x.scale[0] * weight_scale * alpha
    bias = _bias(graph, bias_value, unit)
    if bias is False:
        return None
    members, clamp, output = [node], (-np.inf, np.inf), None
    user = _single_user(graph, node)
    added = _bias_add(graph, node, user, unit.size)
    if added is not None:
        members.append(user)
        bias = (0 if bias is None else bias) + np.broadcast_to(added, unit.shape) / unit
        user = _single_user(graph, user)
    bias = None if bias is None else np.rint(bias)
    interval = user and _activation_clamp(graph, user)
    if interval:
        members.append(user)
        clamp = interval
        user = _single_user(graph, user)
    quantize = _producer(graph, Value(user.name), "QuantizeLinear") if user else None
    parameters = quantize and _parameters(graph, quantize)
    if parameters and parameters[0].size == 1 and quantize.outputs[0].dtype in EIGHT_BITS:
        members.append(quantize)
        output = (*parameters, quantize.outputs[0].dtype)
    return Match(node, x, weights, weight_scale, bias, alpha, members, clamp, output)


def _constants(graph: Graph, node: Node, positions: tuple[int, ...]) -> list[np.ndarray] | None:
    arrays = [graph.constant_value(graph.input_values(node)[i]) if i < node.num_inputs else None for i in positions]
    return None if any(a is None for a in arrays) else arrays


def match_qlinear(graph: Graph, node: Node) -> Match | None:
    """A QLinearConv (2-D) or QLinearMatMul with constant symmetric int8 weights and constant scales."""
    if node.domain != "" or node.op_type not in ("QLinearConv", "QLinearMatMul"):
        return None
    values, types = graph.input_values(node), graph.input_types(node)
    arrays = _constants(graph, node, (1, 2, 3, 4, 5, 6, 7))
    if arrays is None or types[0].dtype not in EIGHT_BITS or not all(t.is_static for t in types if t is not None):
        return None
    x_scale, x_zero_point, weights, w_scale, w_zero_point, y_scale, y_zero_point = arrays
    expected = 4 if node.op_type == "QLinearConv" else 2
    if weights.dtype != np.int8 or weights.ndim != expected or np.any(w_zero_point) or \
            node.outputs[0].dtype not in EIGHT_BITS or x_scale.dtype != np.float32 or y_scale.dtype != np.float32:
        return None
    channels = weights.shape[0 if expected == 4 else 1]
    if w_scale.size not in (1, channels) or x_scale.size != 1 or y_scale.size != 1:
        return None
    bias = graph.constant_value(values[8]) if len(values) > 8 and values[8] is not None else None
    if len(values) > 8 and values[8] is not None and bias is None:
        return None
    x = Quantization(values[0], types[0].dtype, x_scale.astype(np.float64).ravel(),
                     x_zero_point.astype(np.int64).ravel())
    output = (y_scale.astype(np.float64).ravel(), y_zero_point.astype(np.int64).ravel(), node.outputs[0].dtype)
    return Match(node, x, weights, np.broadcast_to(w_scale.astype(np.float64).ravel(), (channels,)),
                 None if bias is None else bias.astype(np.int64), 1.0, [node], (-np.inf, np.inf), output)


def match_integer(graph: Graph, node: Node) -> Match | None:
    """A ConvInteger (2-D) or MatMulInteger with constant int8 weights of zero point 0 and a constant input
    zero point: exact, so always taken."""
    if node.domain != "" or node.op_type not in ("ConvInteger", "MatMulInteger"):
        return None
    values, types = graph.input_values(node), graph.input_types(node)
    weights = graph.constant_value(values[1])
    zero_points = [None if i >= len(values) or values[i] is None else graph.constant_value(values[i]) for i in (2, 3)]
    present = [i < len(values) and values[i] is not None for i in (2, 3)]
    expected = 4 if node.op_type == "ConvInteger" else 2
    if weights is None or weights.dtype != np.int8 or weights.ndim != expected or types[0].dtype not in EIGHT_BITS \
            or any(p and z is None for p, z in zip(present, zero_points)) or not types[0].is_static \
            or (zero_points[1] is not None and np.any(zero_points[1])) \
            or (zero_points[0] is not None and zero_points[0].size != 1):
        return None
    x_zero_point = np.zeros(1, np.int64) if zero_points[0] is None else zero_points[0].astype(np.int64).ravel()
    channels = weights.shape[0 if expected == 4 else 1]
    return Match(node, Quantization(values[0], types[0].dtype, np.ones(1), x_zero_point), weights, np.ones(channels),
                 None, 1.0, [node], (-np.inf, np.inf), None, integer=True)


def _quantized_bound(value: float, scale: float, zero_point: int, dtype: str) -> int:
    """QuantizeLinear of one float (float32 division and rounding, as the op does)."""
    low, high = EIGHT_BITS[dtype]
    if np.isinf(value):
        return low if value < 0 else high
    return int(np.clip(np.rint(np.float32(value) / np.float32(scale)) + zero_point, low, high))


def _epilogue(m: Match, unit: np.ndarray) -> tuple[np.ndarray, dict]:
    """The float32 multipliers per channel and the output attributes."""
    if m.integer:
        return np.ones_like(unit, np.float32), {"output_dtype": "int32"}
    if m.output is None:
        attrs = {"output_dtype": "float32"}
        attrs.update({key: float(bound) for key, bound in zip(("low", "high"), m.clamp) if np.isfinite(bound)})
        return unit.astype(np.float32), attrs
    scale, zero_point, dtype = m.output
    low, high = (_quantized_bound(bound, scale[0], int(zero_point[0]), dtype) for bound in m.clamp)
    attrs = {"output_dtype": dtype, "y_zero_point": int(zero_point[0]), "low": low, "high": high}
    return (unit / scale[0]).astype(np.float32), attrs


def build(graph: Graph, m: Match, isa: str) -> Node | None:
    """Add the fused node for `m` (not yet wired to the users); None when it does not fit an int8 kernel."""
    unit = m.x.scale[0] * m.weight_scale * m.alpha
    is_conv = m.linear.op_type in ("Conv", "QLinearConv", "ConvInteger")
    weights = m.weights.astype(np.int64)
    sums = weights.reshape(weights.shape[0], -1).sum(axis=1) if is_conv else weights.sum(axis=0)
    x_zero_point = int(m.x.zero_point[0])
    offset = (0 if m.bias is None else m.bias) - (x_zero_point + SHIFT[m.x.dtype]) * sums
    if np.abs(offset).max(initial=0) >= 2 ** 31:
        return None
    multiplier, attrs = _epilogue(m, unit)
    attrs.update(x_zero_point=x_zero_point, isa=isa, fused_nodes=[member.name for member in m.members])
    if is_conv:
        conv = m.linear.attrs
        kernel = list(m.weights.shape[2:])
        attrs.update(kernel_shape=kernel, strides=list(conv.get("strides", [1, 1])),
                     pads=list(conv.get("pads", [0, 0, 0, 0])), dilations=list(conv.get("dilations", [1, 1])),
                     group=conv.get("group", 1))
        if conv.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or attrs["kernel_shape"] != conv.get(
                "kernel_shape", kernel):
            return None
        packed, op_type = pack_conv_weights(m.weights), "QuantizedConv"
    else:
        columns = m.weights.shape[1]
        padded = round_up(columns, VECTOR_COLUMNS)
        offset, multiplier = (np.pad(a, (0, padded - columns)) for a in (offset, multiplier))
        attrs["columns"] = columns
        packed, op_type = pack_matmul_weights(m.weights), "QuantizedMatMul"
    name = m.linear.name
    inputs = [m.x.value, graph.add_constant(packed, f"{name}.packed_weights"),
              graph.add_constant(offset.astype(np.int32), f"{name}.offset"),
              graph.add_constant(multiplier.astype(np.float32), f"{name}.multiplier")]
    dtype = attrs["output_dtype"]
    fused = graph.add_node(op_type, inputs, attrs, domain=KILN_DOMAIN, name=f"{name}.int8",
                           outputs=[TensorType(dtype, m.members[-1].outputs[0].shape)])
    problem = kernel_for(fused).check(graph, fused)
    if problem:
        log.info("fuse-quantized-linear: %s stays float: %s", name, problem)
        graph.remove_node(fused.name)
        return None
    return fused


def replace(graph: Graph, m: Match, fused: Node) -> None:
    """Wire the fused node in place of the members; drop the members and DequantizeLinear nodes left unused."""
    graph.replace_all_uses(Value(m.members[-1].name), Value(fused.name))
    inputs = [value for member in m.members for value in graph.input_values(member) if value is not None]
    for member in reversed(m.members):
        graph.remove_node(member.name)
    for value in inputs:
        if value.node in graph and graph.node(value.node).op_type == "DequantizeLinear":
            remove_if_unused(graph, value.node)


@register_pass("fuse-quantized-linear")
@dataclass(frozen=True)
class FuseQuantizedLinear:
    """`isa`: the int8 kernels' instruction set ("" = the best the compile's machine has, int8_isa.py);
    `qlinear`: also QLinearConv / QLinearMatMul (float32 requantization instead of their exact kernels)."""

    isa: str = ""
    qlinear: bool = False

    def __call__(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        isa = self.isa or isa_for((ctx or PassContext()).options)
        for node in graph.topological_order():
            if node.name not in graph:
                continue
            found = match(graph, node) or match_integer(graph, node) or \
                (match_qlinear(graph, node) if self.qlinear else None)
            fused = found and build(graph, found, isa)
            if fused:
                log.info("fuse-quantized-linear: %s -> %s (%s, %s)", ", ".join(m.name for m in found.members),
                         fused.qualified_op, fused.attrs["output_dtype"], isa)
                replace(graph, found, fused)
        return graph
