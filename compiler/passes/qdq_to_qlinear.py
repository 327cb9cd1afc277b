"""Turn QDQ Conv / MatMul / Gemm layers into the standard QLinearConv / QLinearMatMul (the gpu's int8 path).

A QDQ graph (ours or onnxruntime.quantization.quantize_static's) computes a quantized layer in
float: DequantizeLinear(x_q) and DequantizeLinear(w_q) [+ DequantizeLinear(b_q)] -> Conv | MatMul |
Gemm [-> Relu | Clip] -> QuantizeLinear. fuse-quantized-linear's `match` finds these (its rules: x
per tensor, weights constant symmetric int8 per tensor or per output channel, bias an int32
DequantizeLinear or a float constant rounded to s_x * s_w[c], 2-D Conv); this pass rewrites each
into standard ONNX ops the gpu kernels compute in int8 (compiler/codegen/opencl/kernels/integer_linear.py):
- Conv -> QLinearConv with the int32 bias;
- MatMul, and Gemm without bias -> QLinearMatMul over the [K, N] weights (Gemm's alpha folded into
  the weight scales);
- Gemm with a bias -> Reshape x to [M, K, 1], a 1-D QLinearConv over the weights as [N, K, 1] with
  the bias, Reshape to [M, N]: QLinearMatMul has no bias input, and this keeps the bias exact;
- a Relu or Clip -> Clip on the 8-bit result at the quantized bounds, which is exact (quantization is
  monotone), and dropped when the bounds are the type's own (a Relu before a zero point at the
  type's lowest value).
A layer without a QuantizeLinear after it stays float (QLinear ops give 8-bit results only).
"""

from __future__ import annotations

import numpy as np

from compiler.codegen.opencl.kernels.registry import gpu_kernel_for
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.fuse_quantized_linear import EIGHT_BITS, Match, _quantized_bound, match, replace
from compiler.passes.manager import PassContext, log, register_pass

CONV_ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
OPSET = 13  # at least: Clip with bound inputs, Reshape and the QLinear ops as they are since


class _Builder:
    """Adds the nodes of one rewrite, remembering them so a rewrite the gpu cannot compile is undone."""

    def __init__(self, graph: Graph, m: Match):
        self.graph, self.m, self.added = graph, m, []
        self.prefix, self.version = m.linear.name, max(m.linear.version or OPSET, OPSET)

    def constant(self, array: np.ndarray, what: str) -> Value:
        value = self.graph.add_constant(array, f"{self.prefix}.{what}")
        self.added.append(value.node)
        return value

    def node(self, op_type: str, inputs: list, attrs: dict, dtype: str, shape) -> Node:
        node = self.graph.add_node(op_type, inputs, attrs, name=f"{self.prefix}.{op_type.lower()}",
                                   version=self.version, outputs=[TensorType(dtype, tuple(shape))])
        self.added.append(node.name)
        return node

    def undo(self) -> None:
        for name in reversed(self.added):
            self.graph.remove_node(name)


def _problem(graph: Graph, node: Node) -> str | None:
    spec = gpu_kernel_for(node)
    return f"no gpu kernel for {node.op_type}" if spec is None else spec.check(graph, node)


def _qlinear(b: _Builder) -> Node | None:
    """The QLinear node(s) of the match, last one returned; None when the bias does not fit int32."""
    m, graph = b.m, b.graph
    scale, zero_point, dtype = m.output
    channels = m.weight_scale.size
    if m.bias is not None and np.abs(m.bias).max(initial=0) >= 2 ** 31:
        return None
    x_shape = graph.type_of(m.x.value).shape
    out_shape = m.linear.outputs[0].shape
    x_params = [b.constant(np.float32(m.x.scale[0]), "x_scale"),
                b.constant(np.array(m.x.zero_point[0], m.x.dtype), "x_zero_point")]
    w_params = [b.constant((m.weight_scale * m.alpha).astype(np.float32), "w_scale"),
                b.constant(np.zeros(channels, np.int8), "w_zero_point")]
    y_params = [b.constant(np.float32(scale[0]), "y_scale"), b.constant(np.array(zero_point[0], dtype), "y_zero_point")]
    bias = [] if m.bias is None else [b.constant(m.bias.astype(np.int32), "bias")]
    if m.linear.op_type == "Conv":
        attrs = {key: m.linear.attrs[key] for key in CONV_ATTRIBUTES if key in m.linear.attrs}
        weights = b.constant(m.weights, "weights")
        return b.node("QLinearConv", [m.x.value, *x_params, weights, *w_params, *y_params, *bias], attrs, dtype,
                      out_shape)
    if not bias:
        weights = b.constant(np.ascontiguousarray(m.weights), "weights")
        return b.node("QLinearMatMul", [m.x.value, *x_params, weights, *w_params, *y_params], {}, dtype, out_shape)
    rows, depth = x_shape
    x = b.node("Reshape", [m.x.value, b.constant(np.array([rows, depth, 1]), "x_shape")], {}, m.x.dtype,
               (rows, depth, 1))
    weights = b.constant(np.ascontiguousarray(m.weights.T)[:, :, None], "weights")
    conv = b.node("QLinearConv", [Value(x.name), *x_params, weights, *w_params, *y_params, *bias],
                  {"kernel_shape": [1]}, dtype, (rows, channels, 1))
    return b.node("Reshape", [Value(conv.name), b.constant(np.array(out_shape), "y_shape")], {}, dtype, out_shape)


def _clipped(b: _Builder, node: Node) -> Node:
    """`node`'s 8-bit result clipped to the match's Relu/Clip interval in the quantized domain."""
    scale, zero_point, dtype = b.m.output
    bounds = [_quantized_bound(bound, scale[0], int(zero_point[0]), dtype) for bound in b.m.clamp]
    if tuple(bounds) == EIGHT_BITS[dtype]:
        return node
    low, high = (b.constant(np.array(bound, dtype), what) for bound, what in zip(bounds, ("low", "high")))
    return b.node("Clip", [Value(node.name), low, high], {}, dtype, node.outputs[0].shape)


@register_pass("qdq-to-qlinear")
def qdq_to_qlinear(graph: Graph, ctx: PassContext | None = None) -> Graph:
    for node in graph.topological_order():
        if node.name not in graph:
            continue
        m = match(graph, node)
        if m is None:
            continue
        if m.output is None:
            log.info("qdq-to-qlinear: %s stays float: no QuantizeLinear after it (QLinear ops give 8-bit results)",
                     node.name)
            continue
        b = _Builder(graph, m)
        last = _qlinear(b)
        if last is None:
            log.info("qdq-to-qlinear: %s stays float: its bias does not fit int32 in units of s_x * s_w", node.name)
            continue
        last = _clipped(b, last)
        problem = next((p for p in (_problem(graph, graph.node(n)) for n in b.added
                                    if not graph.node(n).is_constant) if p), None)
        if problem:
            log.info("qdq-to-qlinear: %s stays float: %s", node.name, problem)
            b.undo()
            continue
        log.info("qdq-to-qlinear: %s -> %s", ", ".join(member.name for member in m.members), last.name)
        replace(graph, m, last)
    return graph
