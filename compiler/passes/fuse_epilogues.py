"""Fuse the elementwise tail of a Conv, Gemm or MatMul into it: kiln::FusedConv/FusedGemm/FusedMatMul.

A bias Add, an activation (Relu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, LeakyRelu, Gelu
as its Erf or Tanh formula...) and a residual Add after a linear op otherwise each read and
write the whole output again; fused, the linear op's kernel applies them to every output while
it is in a register, before its one store (compiler/ops/fused_linear.py).

From the linear op, the nodes that read a value of the group are taken in topological order
while they are cpu elementwise ops (elementwise.op_problem) of the op's dtype and output shape;
their other operands (a bias, a residual from another branch) become inputs of the fused node.
The group ends at the first node that reads a group value without qualifying, and is cut back
to its longest prefix in which every value but the last is read only inside the group, so one
value leaves it; Gelu's Erf formula reads its input twice and is taken whole that way. Nodes
inside subgraphs are left alone (the cpu target compiles no subgraphs).

A fused Conv with constant weights that the kernel computes in channel vectors (few output positions,
or a long reduction over larger images: convolution.channel_vector_form)
gets its weights transposed here, at compile time, for the kernel's channel-vector form; such a
Conv with nothing to fuse becomes a FusedConv with an empty epilogue, for the same weights.
"""

from __future__ import annotations

from compiler.codegen.llvm.kernels.conv_geometry import ConvGeometry, conv_geometry
from compiler.codegen.llvm.kernels.convolution import channel_vector_form, channel_vector_plan
from compiler.codegen.llvm.kernels.elementwise import OPS, op_problem
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.fused_elementwise import encode_step
from compiler.ops.fused_linear import BASES, transposed_weights
from compiler.passes.manager import PassContext, log, register_pass

FUSED = {base: fused for fused, (base, _) in BASES.items()}
BASE_INPUTS = {base: count for base, count in BASES.values()}
FLOATS = frozenset({"float32", "float64"})
ARITHMETIC = frozenset({"Add", "Sum", "Sub", "Mul", "Div"})
WINDOW = 32  # nodes looked at after the linear op, at most


def _static(value_type) -> bool:
    return isinstance(value_type, TensorType) and value_type.is_static


def _base(graph: Graph, node: Node) -> bool:
    if node.domain != "" or node.op_type not in FUSED or not _static(node.outputs[0]):
        return False
    types = [t for t in graph.input_types(node) if t is not None]
    if node.op_type == "Conv" and not 3 <= len(node.outputs[0].shape) <= 5:
        return False  # no cpu kernel: left for the unsupported-op report
    return node.outputs[0].dtype in FLOATS and all(_static(t) and t.dtype == node.outputs[0].dtype for t in types)


def _qualifies(graph: Graph, node: Node, result: TensorType) -> bool:
    if node.domain != "" or node.op_type not in OPS or len(node.outputs) != 1 or node.outputs[0] != result:
        return False
    types = graph.input_types(node)
    if not all(t is None or _static(t) for t in types):
        return False
    return op_problem(node, [None if t is None else t.dtype for t in types]) is None


def _closed(graph: Graph, members: list[Node]) -> bool:
    """Every member's result but the last is read only by members."""
    names = {member.name for member in members}
    return all(not graph.is_graph_output(Value(member.name)) and
               all(user in names for user, _ in graph.uses(Value(member.name))) for member in members[:-1])


def _group(graph: Graph, base: Node, following: list[Node]) -> list[Node]:
    """The base op and the epilogue nodes fused with it (just the base op when none). `following` are
    the nodes after it in topological order. A node reading no group value is passed over; the first
    one reading a group value without qualifying ends the scan, so every value a member reads from
    outside the group was computed without the group's results (no cycle)."""
    members, best, names = [base], [base], {base.name}
    for node in following[:WINDOW]:
        if not any(value is not None and value.node in names for value in graph.input_values(node)):
            continue
        if not _qualifies(graph, node, base.outputs[0]):
            break
        members.append(node)
        names.add(node.name)
        if _closed(graph, members):
            best = list(members)
    return best


def _fuse(graph: Graph, members: list[Node]) -> None:
    base, tail = members[0], members[1:]
    names = {member.name for member in members}
    count = BASE_INPUTS[base.op_type]
    inputs = (graph.input_values(base) + [None] * count)[:count]
    number = {Value(base.name): 0}
    for member in tail:
        for value in graph.input_values(member):
            if value is not None and value not in number and value.node not in names:
                number[value] = len(number)
                inputs.append(value)
    for member in tail:
        number[Value(member.name)] = len(number)
    steps = [encode_step(member, [None if v is None else number[v] for v in graph.input_values(member)])
             for member in tail]
    activation = "+".join(dict.fromkeys(m.op_type for m in tail if m.op_type not in ARITHMETIC))
    attrs = {**base.attrs, "epilogue": steps, "activation": activation, "fused_nodes": [m.name for m in members]}
    geometry = _channel_vector_geometry(graph, base) if base.op_type == "Conv" else None
    if geometry is not None:
        blocked = transposed_weights(graph.constant_value(inputs[1]), channel_vector_plan(geometry).block)
        out_channels, _, *kernel = graph.type_of(inputs[1]).shape
        attrs.update(transposed_weights=1, kernel_shape=kernel, out_channels=out_channels)
        inputs[1] = graph.add_constant(blocked, f"{base.name}.transposed_weights")
    graph.replace_node(members[-1], FUSED[base.op_type], inputs, attrs, domain=KILN_DOMAIN, version=base.version)
    for member in reversed(members[:-1]):
        graph.remove_node(member.name)


def _channel_vector_geometry(graph: Graph, conv: Node) -> ConvGeometry | None:
    """The geometry of a Conv with constant weights that the kernel computes with channel vectors (its
    weights are then laid out as the blocked transpose, compiler/ops/fused_linear.py); None otherwise."""
    x, w = graph.input_values(conv)[:2]
    if graph.constant_value(w) is None:
        return None
    geometry = conv_geometry(conv, graph.type_of(x), graph.type_of(w))
    return geometry if channel_vector_form(geometry) else None


@register_pass("fuse-epilogues")
def fuse_epilogues(graph: Graph, ctx: PassContext | None = None) -> Graph:
    seen: set[str] = set()
    fused = True
    while fused:  # after each fusion the order is taken afresh: fused nodes replace their members
        fused = False
        order = graph.topological_order()
        for position, node in enumerate(order):
            if node.name in seen or not _base(graph, node):
                continue
            seen.add(node.name)
            members = _group(graph, node, order[position + 1:])
            if len(members) > 1 or node.op_type == "Conv" and _channel_vector_geometry(graph, node) is not None:
                log.info("fuse-epilogues: %s fused into one %s kernel", ", ".join(m.name for m in members),
                         FUSED[members[0].op_type])
                _fuse(graph, members)
                fused = True
                break
    return graph
