"""Run chains of convolutions in the blocked channel layout NCHWc: kiln::BlockedConv.

Each 2-D float Conv/FusedConv with constant weights, one group (or one per channel: depthwise), and c
input and output channels at least (c = the CPU's vector lanes; a stem's fewer input channels are read
as plain NCHW) can become a BlockedConv (compiler/ops/blocked_conv.py): its weights packed here at
compile time, its output [N, C / c, H, W, c]. Ops between such convs that do not care about the layout
run on blocked values too: Max/AveragePool (a 3-D pool whose window spans one lane), GlobalAverage/MaxPool
(a ReduceMean/Max over the two spatial axes), LRN (kiln::BlockedLRN), Concat along the channels, Slices of
the image (a strided 1x1 conv's subsampling, from subsample-pointwise: a contiguous blocked conv after it beats
one gathering its strided pixels, 1.36 against 1.62 ms for ResNet-50's 512 -> 1024 projection), and elementwise
ops whose other operands are of the same shape or constants (laid out here to broadcast to the blocked form).

A channel count that is not a multiple of c (MobileNetV2's 24, SqueezeNet's 1000 classes) is padded to
whole blocks, as oneDNN does: the padded channels get zero weights and bias, and since a conv reading them
multiplies them by zero weights, they only need to stay finite. So a padded value is read only by ops that
keep finite values finite (FINITE_OPS), never by a Concat, and is sliced back to its channels when it
leaves the blocked layout.

Such nodes linked by the activations between them form groups; a group is rewritten when its convs' FLOPs
pay for the conversions at its edges (`flops_per_conversion`). A value entering a group from outside is
blocked by a Reshape + Transpose (a Pad first when padded), a blocked value read outside its group (or
leaving the graph) is made plain again the same way (and a Slice), each value once.
Models with a dynamic image size are left alone (their convs stop at run-time extents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import networkx as nx
import numpy as np

from compiler.codegen.llvm.kernels.blocked_conv import blocked_plan
from compiler.codegen.llvm.kernels.conv_geometry import conv_geometry
from compiler.codegen.llvm.kernels.elementwise import OPS, op_problem
from compiler.codegen.llvm.kernels.gemm_microkernel import vector_lanes
from compiler.codegen.llvm.kernels.linear_algebra import FLOATS
from compiler.dynamic_extent import ExtentBounds
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.blocked_conv import (blocked_type, pack_depthwise_weights, pack_weights, pad_channels, padded,
                                       to_blocked)
from compiler.ops.fused_linear import epilogue_steps, untransposed_weights, weights_shape
from compiler.ops.nn import lrn_window
from compiler.ops.pool_geometry import pool_dims, pool_problem
from compiler.passes.manager import PassContext, log, register_pass

POOLS = ("MaxPool", "AveragePool")
GLOBAL_POOLS = {"GlobalAveragePool": "ReduceMean", "GlobalMaxPool": "ReduceMax"}
FINITE_OPS = frozenset({"Add", "Sub", "Mul", "Sum", "Mean", "Max", "Min", "PRelu", "Relu", "LeakyRelu", "Elu", "Selu",
                        "HardSigmoid", "HardSwish", "Clip", "Sigmoid", "Softplus", "Softsign", "Neg", "Abs", "Tanh",
                        "Erf", "Sign", "Floor", "Ceil", "Round"})
"""Elementwise ops that give finite results for finite inputs: the ops that may read padded channels."""
FLOPS_PER_CONVERSION = 600  # conv FLOPs a group needs per element it converts (a conversion costs ~0.45 ns an
# element at 1 thread, what a 10 % faster conv saves on ~700 FLOPs: ResNet-50's stem output, 0.36 ms)


def _conv_inputs(graph: Graph, node: Node) -> tuple[list, list] | None:
    """(X, W, B values; epilogue operands) of a Conv or FusedConv node, None for other nodes."""
    values = graph.input_values(node)
    if node.op_type == "Conv" and node.domain == "":
        return (values + [None] * 3)[:3], []
    if node.op_type == "FusedConv" and node.domain == KILN_DOMAIN:
        return values[:3], values[3:]
    return None


def _plain_weights(graph: Graph, node: Node):
    weights = graph.constant_value(graph.input_values(node)[1])
    if weights is None or not node.attrs.get("transposed_weights", 0):
        return weights
    return untransposed_weights(weights, node)


def _weights_shape(graph: Graph, node: Node) -> tuple | None:
    """W's plain shape [M, C / group, *kernel] when it is a constant (transposed or not), else None."""
    w = graph.input_values(node)[1]
    if graph.constant_value(w) is None:
        return None
    return weights_shape(node, graph.type_of(w).shape)


def _in_block(graph: Graph, node: Node) -> int | None:
    """The input block a convertible conv reads (c, or 1 for a stem's plain input); None if not convertible."""
    split = _conv_inputs(graph, node)
    output = node.outputs[0]
    if split is None or not isinstance(output, TensorType) or not output.is_static or output.dtype not in FLOATS:
        return None
    extras = split[1]
    x_type = graph.type_of(split[0][0])
    weights = _weights_shape(graph, node)
    if len(output.shape) != 4 or weights is None or len(weights) != 4:
        return None
    if not (isinstance(x_type, TensorType) and x_type.is_static and x_type.dtype == output.dtype):
        return None
    lanes = vector_lanes(output.dtype)
    if any(not _blockable_operand(graph, value, output) for value in extras):
        return None
    channels, out_channels, group = x_type.shape[1], weights[0], int(node.attrs.get("group", 1))
    if out_channels < lanes or output.shape[1] != out_channels or group not in (1, channels):
        return None
    if out_channels % lanes and not _pads_finite(graph, node):
        return None
    if group > 1:  # depthwise (one input channel per group and an output channel each)
        return lanes if out_channels == channels and weights[1] == 1 else None
    return lanes if channels >= lanes else 1


def _pads_finite(graph: Graph, node: Node) -> bool:
    """Whether a conv whose output channels are padded keeps the padded ones finite: its bias is a constant (to
    be padded with zeros) and its epilogue's steps are FINITE_OPS."""
    bias = _conv_inputs(graph, node)[0][2]
    if bias is not None and graph.constant_value(bias) is None:
        return False
    return node.op_type == "Conv" or all(step.node.op_type in FINITE_OPS for step in epilogue_steps(node))


def _blockable_operand(graph: Graph, value: Value | None, output: TensorType) -> bool:
    """An epilogue operand the blocked output can read: the output's own shape, or a broadcasting constant."""
    value_type = graph.type_of(value) if value is not None else None
    if not isinstance(value_type, TensorType):
        return False
    if tuple(value_type.shape) == tuple(output.shape):
        return True
    array = graph.constant_value(value)
    if array is None or array.ndim > 4:
        return False
    shape = (1,) * (4 - array.ndim) + array.shape
    return shape[0] == 1 and shape[1] in (1, output.shape[1])


def _blocked_constant(array, lanes: int):
    """A constant broadcasting to an NCHW output, laid out to broadcast to its NCHWc form."""
    shape = (1,) * (4 - array.ndim) + array.shape
    value = array.reshape(shape)
    if shape[1] == 1:
        return value.reshape(*shape, 1)
    return to_blocked(value, lanes)


class _Blocker:
    """Rewrites the chosen nodes and inserts the boundary conversions, each value converted once."""

    def __init__(self, graph: Graph, chosen: set[str]):
        self.graph = graph
        self.pools = {node.name: pool_dims(graph, node) for node in graph.nodes()  # before their inputs change
                      if node.name in chosen and node.op_type in POOLS}
        self.blocked: dict[Value, Value] = {}  # plain value -> its blocked form
        self.plain: dict[Value, Value] = {}  # blocked value -> its plain form
        self.blocked_values: dict[Value, TensorType] = {}  # outputs of rewritten nodes -> their plain types
        self.rewritten: set[str] = set()

    def to_blocked(self, value: Value, lanes: int) -> Value:
        if value in self.blocked_values:
            return value
        if value not in self.blocked:
            graph, plain = self.graph, self.graph.type_of(value)
            n, c, h, w = plain.shape
            name, source, blocks = f"{value.node}.blocked", value, padded(c, lanes) // lanes
            if c % lanes:  # zeros for the last block's missing channels
                pads = graph.add_constant(np.array([0, 0, 0, 0, 0, blocks * lanes - c, 0, 0], np.int64), f"{name}.pads")
                source = Value(graph.add_node("Pad", [value, pads], version=13, name=f"{name}.padded",
                                              outputs=[TensorType(plain.dtype, (n, blocks * lanes, h, w))]).name)
            shape = graph.add_constant(np.array([n, blocks, lanes, h, w], np.int64), f"{name}.shape")
            split = graph.add_node("Reshape", [source, shape], version=14, name=f"{name}.split",
                                   outputs=[TensorType(plain.dtype, (n, blocks, lanes, h, w))])
            moved = graph.add_node("Transpose", [Value(split.name)], {"perm": [0, 1, 3, 4, 2]}, version=13,
                                   name=name, outputs=[blocked_type(plain, lanes)])
            self.blocked[value] = Value(moved.name)
        return self.blocked[value]

    def to_plain(self, value: Value) -> Value:
        if value not in self.plain:
            graph, blocked, plain = self.graph, self.graph.type_of(value), self.blocked_values[value]
            n, blocks, h, w, lanes = blocked.shape
            name = f"{value.node}.plain"
            moved = graph.add_node("Transpose", [value], {"perm": [0, 1, 4, 2, 3]}, version=13, name=f"{name}.moved",
                                   outputs=[TensorType(blocked.dtype, (n, blocks, lanes, h, w))])
            shape = graph.add_constant(np.array([n, blocks * lanes, h, w], np.int64), f"{name}.shape")
            padding = blocks * lanes != plain.shape[1]
            merged = graph.add_node("Reshape", [Value(moved.name), shape], version=14,
                                    name=f"{name}.merged" if padding else name,
                                    outputs=[TensorType(blocked.dtype, (n, blocks * lanes, h, w))])
            self.plain[value] = Value(merged.name)
            if padding:  # the padded channels dropped
                starts, ends, axes = (graph.add_constant(np.array([v], np.int64), f"{name}.{key}")
                                      for key, v in (("starts", 0), ("ends", plain.shape[1]), ("axes", 1)))
                self.plain[value] = Value(graph.add_node("Slice", [Value(merged.name), starts, ends, axes],
                                                         version=13, name=name, outputs=[plain]).name)
        return self.plain[value]

    def operand(self, value: Value | None, output: TensorType, lanes: int) -> Value | None:
        """`value` as an operand of a blocked elementwise step: blocked, or a constant laid out to broadcast."""
        array = self.graph.constant_value(value)
        if value is None or array is not None and tuple(array.shape) != tuple(output.shape):
            if array is None or array.size == 1:
                return value
            return self.graph.add_constant(_blocked_constant(array, lanes), f"{value.node}.blocked")
        return self.to_blocked(value, lanes)

    def replace(self, node: Node, op_type: str, inputs: list, attrs: dict, **kwargs) -> None:
        plain = node.outputs[0]
        output = blocked_type(plain, vector_lanes(plain.dtype))
        new = self.graph.replace_node(node, op_type, inputs, attrs, outputs=[output], **kwargs)
        self.blocked_values[Value(new.name)] = plain
        self.rewritten.add(new.name)

    def convert_conv(self, node: Node, in_block: int) -> None:
        graph, output = self.graph, node.outputs[0]
        lanes = vector_lanes(output.dtype)
        (_, w, bias), extras = _conv_inputs(graph, node)
        x = graph.input_values(node)[0]
        x_type = self.blocked_values.get(x, graph.type_of(x))  # (the conv's geometry over the plain input)
        geometry = conv_geometry(node, x_type, graph.type_of(w))
        real_channels = geometry.channels
        channels, out_channels = padded(geometry.channels, in_block), padded(geometry.out_channels, lanes)
        geometry = replace(geometry, channels=channels, out_channels=out_channels,
                           group=channels if geometry.group > 1 else 1)
        plain = pad_channels(_plain_weights(graph, node), lanes, axis=0)
        if geometry.group > 1:
            weights = pack_depthwise_weights(plain, lanes)
        else:
            weights = pack_weights(pad_channels(plain, in_block), in_block,
                                   blocked_plan(geometry, in_block, lanes).group_channels)
        if bias is not None and out_channels != output.shape[1]:
            bias = graph.add_constant(pad_channels(graph.constant_value(bias), lanes, axis=0), f"{bias.node}.padded")
        inputs = [x if in_block == 1 else self.to_blocked(x, lanes),
                  graph.add_constant(weights, f"{w.node}.packed"), bias,
                  *(self.operand(value, output, lanes) for value in extras)]
        bottom = [max(0, (o - 1) * s + (k - 1) * d + 1 - i - p) for o, s, k, d, i, p in
                  zip(geometry.out_size, geometry.strides, geometry.kernel, geometry.dilations, geometry.in_size,
                      geometry.pads)]
        attrs = {"kernel_shape": list(geometry.kernel), "strides": list(geometry.strides),
                 "dilations": list(geometry.dilations), "pads": [*geometry.pads, *bottom], "out_block": lanes,
                 "group": geometry.group,
                 "epilogue": node.attrs.get("epilogue", []), "activation": node.attrs.get("activation", ""),
                 "fused_nodes": node.attrs.get("fused_nodes", [node.name])}
        if real_channels != channels and geometry.group == 1:
            attrs["in_channels"] = real_channels
        self.replace(node, "BlockedConv", inputs, attrs, domain=KILN_DOMAIN, version=1)

    def convert_other(self, node: Node) -> None:
        """A pool, LRN, Concat or elementwise node over blocked values: the same op over the blocked layout (a 2-D
        pool is a 3-D one whose window spans one lane; a global pool a reduction over the two spatial axes)."""
        graph, output = self.graph, node.outputs[0]
        lanes = vector_lanes(output.dtype)
        if node.op_type in POOLS:
            dims = self.pools[node.name]
            attrs = {key: value for key, value in node.attrs.items() if key not in ("auto_pad", "storage_order")}
            attrs.update(kernel_shape=[d.kernel for d in dims] + [1], strides=[d.stride for d in dims] + [1],
                         pads=[d.pad_begin for d in dims] + [0] + [d.pad_end for d in dims] + [0])
            if "dilations" in attrs:  # (older opsets have none)
                attrs["dilations"] = [d.dilation for d in dims] + [1]
            self.replace(node, node.op_type, [self.to_blocked(graph.input_values(node)[0], lanes)], attrs,
                         version=node.version)
        elif node.op_type in GLOBAL_POOLS:
            axes = graph.add_constant(np.array([2, 3], np.int64), f"{node.name}.axes")
            self.replace(node, GLOBAL_POOLS[node.op_type], [self.to_blocked(graph.input_values(node)[0], lanes), axes],
                         {"keepdims": 1}, version=18)
        elif node.op_type == "Slice":
            x, starts, ends, _, *steps = graph.input_values(node)
            axes = graph.add_constant(np.array(_spatial_axes(graph, node), np.int64), f"{node.name}.axes")
            self.replace(node, "Slice", [self.to_blocked(x, lanes), starts, ends, axes, *steps], {},
                         version=node.version)
        elif node.op_type == "Concat":
            self.replace(node, "Concat", [self.to_blocked(value, lanes) for value in graph.input_values(node)],
                         {"axis": 1}, version=node.version)
        elif node.op_type == "LRN":
            self.replace(node, "BlockedLRN", [self.to_blocked(graph.input_values(node)[0], lanes)], node.attrs,
                         domain=KILN_DOMAIN, version=1)
        else:
            self.replace(node, node.op_type, [self.operand(value, output, lanes) for value in graph.input_values(node)],
                         node.attrs, version=node.version)

    def unblock_readers(self) -> None:
        """Plain readers of blocked values (and graph outputs) read them through a conversion."""
        graph = self.graph
        for value in sorted(self.blocked_values):
            for consumer, index in graph.uses(value):
                if consumer not in self.rewritten:
                    graph.set_input(consumer, index, self.to_plain(value))
            if graph.is_graph_output(value):
                plain = self.to_plain(value)
                graph.outputs = [(name, plain if v == value else v) for name, v in graph.outputs]


def _pass_through(graph: Graph, node: Node) -> bool:
    """A pool, LRN, channel Concat or elementwise op that can run on blocked values as well as on plain ones."""
    output = node.outputs[0] if len(node.outputs) == 1 else None
    if node.domain != "" or not _blockable_type(output):
        return False
    types = graph.input_types(node)
    if node.op_type in POOLS or node.op_type in GLOBAL_POOLS:
        return _blockable_type(types[0]) and pool_problem(graph, node) is None if node.op_type in POOLS else \
            _blockable_type(types[0])
    if node.op_type == "Slice":
        return _blockable_type(types[0]) and _spatial_axes(graph, node) is not None
    if node.op_type == "Concat":  # (padded inputs would leave gaps between their channels)
        return node.attrs.get("axis") in (1, -3) and all(_blockable_type(t) and _whole_blocks(t) for t in types)
    if node.op_type == "LRN":  # (a padded channel would join its neighbours' windows)
        return output.dtype == "float32" and _whole_blocks(output) and node.attrs.get("size", 0) >= 1 and \
            max(lrn_window(node.attrs.get("size", 0))) <= vector_lanes(output.dtype)
    if node.op_type not in OPS or op_problem(node, [None if t is None else t.dtype for t in types]):
        return False
    if not _whole_blocks(output) and node.op_type not in FINITE_OPS:
        return False
    values = graph.input_values(node)
    full = [v for v in values if v is not None and tuple(graph.type_of(v).shape) == tuple(output.shape)
            and graph.constant_value(v) is None]
    return bool(full) and all(v is None or v in full or _blockable_operand(graph, v, output) for v in values)


def _spatial_axes(graph: Graph, node: Node) -> list[int] | None:
    """The axes of a Slice with constant operands that slices only the image (axes 2 and 3 of NCHW, which they
    stay in NCHWc), as non-negative axes; None for other Slices."""
    values = (graph.input_values(node) + [None] * 5)[:5]
    operands = [graph.constant_value(v) if v is not None else None for v in values[1:]]
    if any(operand is None for operand in operands[:3]) or values[4] is not None and operands[3] is None:
        return None
    axes = [int(axis) % 4 for axis in operands[2]]
    return axes if set(axes) <= {2, 3} else None


def _blockable_type(value_type) -> bool:
    """A static float NCHW type of c channels at least (padded to whole blocks when not a multiple of c)."""
    return isinstance(value_type, TensorType) and value_type.is_static and value_type.dtype in FLOATS and \
        len(value_type.shape) == 4 and value_type.shape[1] >= vector_lanes(value_type.dtype)


def _whole_blocks(value_type: TensorType) -> bool:
    return value_type.shape[1] % vector_lanes(value_type.dtype) == 0


def _tensor_inputs(graph: Graph, node: Node) -> list[Value]:
    """The inputs that carry activations (a conv's source and epilogue operands; not weights or constants)."""
    split = _conv_inputs(graph, node)
    values = [split[0][0], *split[1]] if split else graph.input_values(node)
    return [v for v in values if v is not None and graph.constant_value(v) is None]


def _chosen(graph: Graph, convs: dict[str, int], flops_per_conversion: float) -> set[str]:
    """The nodes to rewrite: the connected groups of convertible convs and pass-through ops (linked by the
    activations between them) whose convs do enough work for the conversions at the group's edges."""
    members = set(convs) | {node.name for node in graph.nodes()
                            if node.name not in convs and _pass_through(graph, node)}
    groups = nx.Graph()
    groups.add_nodes_from(members)
    groups.add_edges_from((name, value.node) for name in members for value in _tensor_inputs(graph, graph.node(name))
                          if value.node in members)
    chosen = set()
    for group in nx.connected_components(groups):
        flops = sum(_conv_flops(graph, graph.node(name)) for name in group if name in convs)
        if any(name in convs for name in group) and \
                flops >= flops_per_conversion * _converted_elements(graph, group, convs):
            chosen |= group
    return chosen


def _conv_flops(graph: Graph, node: Node) -> int:
    return 2 * math.prod(node.outputs[0].shape) * math.prod(_weights_shape(graph, node)[1:])


def _converted_elements(graph: Graph, group: set[str], convs: dict[str, int]) -> int:
    """Elements of the values that would be converted into the group's layout or out of it."""
    entering = {value for name in group for value in _tensor_inputs(graph, graph.node(name))
                if value.node not in group and convs.get(name) != 1}
    leaving = {Value(name) for name in group if graph.is_graph_output(Value(name)) or
               any(user not in group for user, _ in graph.uses(Value(name)))}
    return sum(math.prod(graph.type_of(value).shape) for value in entering | leaving)


@register_pass("block-channels")
@dataclass(frozen=True)
class BlockChannels:
    """`flops_per_conversion`: the conv FLOPs a group needs per element it converts at its edges (0 rewrites
    every group)."""

    flops_per_conversion: float = FLOPS_PER_CONVERSION

    def __call__(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        if ExtentBounds.from_options(ctx.options if ctx else {}):
            log.info("block-channels: skipped (a dynamic image size: its convs stop at run-time extents)")
            return graph
        convs = {node.name: block for node in graph.nodes() if (block := _in_block(graph, node))}
        chosen = _chosen(graph, convs, self.flops_per_conversion)
        blocker = _Blocker(graph, chosen)
        for node in graph.topological_order():
            if node.name in convs and node.name in chosen:
                blocker.convert_conv(node, convs[node.name])
            elif node.name in chosen:
                blocker.convert_other(node)
        blocker.unblock_readers()
        if chosen:
            log.info("block-channels: %d convs and %d other nodes run in the blocked layout",
                     len(chosen & set(convs)), len(chosen - set(convs)))
        return graph
