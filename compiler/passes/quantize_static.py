"""Static int8 quantization: a float graph and activation ranges become a standard ONNX QDQ graph.

The graph written is the one ONNX Runtime's quantize_static writes (QDQ format, per_channel=True,
QUInt8 activations, QInt8 weights), so the cpu fusion that turns QDQ patterns into int8 kernels
takes ours and ORT's alike, and every target runs it as a float graph before that fusion:
- Conv, MatMul and Gemm with constant weights read their activation inputs through QuantizeLinear
  -> DequantizeLinear (uint8, per tensor), their weights as int8 per output channel through
  DequantizeLinear (Conv axis 0, MatMul B [.., K, N] its last axis, Gemm B axis 0 with transB=1
  else 1), their constant bias (Conv B, Gemm C of one value per channel) as int32 at scale
  s_x * s_w. Unlike ORT, a MatMul of two activations (attention's scores and context) stays
  float: no kernel multiplies two 8-bit activations faster than float, so the pairs would only
  add launches and rounding.
- MaxPool, AveragePool, GlobalAveragePool and Concat are wrapped the same way so the int8 chain is
  not broken; MaxPool's output keeps its input's scale and zero point (max commutes with
  quantization), as ORT does. Add and Sum are wrapped only where they join two activations and a
  quantized op reads the result (a residual between convs): an Add of a constant (a MatMul's bias,
  Gelu's + 1) stays float, and the int8 kernels fuse a bias Add into their epilogue; a sum only
  float ops read (BERT's residual before LayerNormalization) would be quantized for nothing.
- A Relu, or a Clip whose lower bound is 0, that alone reads a quantized op's output is removed:
  its output's range (from calibration) sets the output's scale with zero point 0, so the uint8
  quantization clamps exactly as it did.
Each quantized value gets one QuantizeLinear/DequantizeLinear pair that all its readers share. Unlike
ORT, an output that no quantized op reads (a graph output, the logits a Softmax reads) stays float:
the int8 kernels write float as cheaply, and 256 levels of logits tie and flip the top-1 class.
`ranges` maps each measured value's name to (low, high); `plan_quantization` says which values
those are, so calibration measures only them. `ignore` names nodes kept float (weights included).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.passes.manager import PassContext, PassError, register_pass
from compiler.quantization.params import ActivationParams, activation_params, quantize_linear_weights

LINEAR = frozenset({"Conv", "MatMul", "Gemm"})
WRAPPED = frozenset({"Add", "Sum", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat"})
SHARES_INPUT_PARAMS = frozenset({"MaxPool"})
JOINS = frozenset({"Add", "Sum"})  # quantized only where they join activations that a quantized op reads
QDQ_VERSION = 19  # per-axis since 13; 19 is the first onnx.reference implements
MAXPOOL_8BIT_VERSION = 12  # the first MaxPool on uint8/int8 tensors; the same op on floats as before


class QuantizationError(PassError):
    """The quantizer cannot do what it was asked (unknown ignore name, missing range)."""


@dataclass(frozen=True)
class QuantizedTensor:
    """An activation input or the output of a quantized node.

    `source`: the value the QuantizeLinear reads, in the quantized graph; `observed`: the value of
    the float graph whose range sets its scale (a removed Relu/Clip's output, else `source`);
    `layer`: the node producing it (a graph input's name for an input); `shares`: for MaxPool, the
    source whose parameters it reuses; `paired`: whether it gets a QuantizeLinear/DequantizeLinear
    pair: an output that no quantized node reads (a graph output, logits before a Softmax) stays
    float, which the int8 kernels compute as cheaply (their float-output form) and more exactly."""

    source: Value
    observed: Value
    layer: str
    shares: Value | None = None
    paired: bool = True


@dataclass
class Plan:
    nodes: list[str] = field(default_factory=list)  # quantized nodes, topological order
    tensors: dict[Value, QuantizedTensor] = field(default_factory=dict)
    removed: dict[str, Value] = field(default_factory=dict)  # removed activation -> the value read instead

    def source(self, value: Value) -> Value:
        """The value a reader of `value` reads once removed activations are gone."""
        return self.removed.get(value.node, value)

    def measured(self) -> list[Value]:
        """The float graph's values calibration must measure."""
        return list(dict.fromkeys(t.observed for t in self.tensors.values() if t.paired and t.shares is None))


def _float32(graph: Graph, value: Value | None) -> bool:
    value_type = None if value is None else graph.type_of(value)
    return isinstance(value_type, TensorType) and value_type.dtype == "float32"


def _activation(graph: Graph, value: Value | None) -> bool:
    return _float32(graph, value) and graph.constant_value(value) is None


def _quantizable(graph: Graph, node: Node) -> bool:
    inputs = graph.input_values(node)
    if node.domain != "" or not node.outputs or not _float32(graph, Value(node.name, 0)):
        return False
    if node.op_type in LINEAR:
        return _activation(graph, inputs[0]) and _float32(graph, inputs[1]) and \
            graph.constant_value(inputs[1]) is not None
    if node.op_type == "MaxPool" and len(node.outputs) > 1 and graph.uses(Value(node.name, 1)):
        return False  # the Indices output is not a quantized value
    return node.op_type in WRAPPED and any(_activation(graph, v) for v in inputs)


def _joins_activations(graph: Graph, node: Node) -> bool:
    return sum(_activation(graph, value) for value in graph.input_values(node)) >= 2


def _zero_lower_bound(graph: Graph, node: Node) -> bool:
    if node.op_type == "Relu":
        return True
    inputs = graph.input_values(node)
    low = graph.constant_value(inputs[1]) if len(inputs) > 1 else node.attrs.get("min")
    high_given = len(inputs) > 2 and inputs[2] is not None
    return (node.op_type == "Clip" and low is not None and float(np.asarray(low)) == 0.0
            and (not high_given or graph.constant_value(inputs[2]) is not None))


def _absorbed(graph: Graph, output: Value, ignore: set[str]) -> Node | None:
    """The Relu/Clip(0, ...) that alone reads `output` (not itself a graph output), if any."""
    uses = graph.uses(output)
    if len(uses) != 1 or uses[0][1] != 0 or graph.is_graph_output(output):
        return None
    reader = graph.node(uses[0][0])
    ok = reader.domain == "" and reader.op_type in ("Relu", "Clip") and reader.name not in ignore
    return reader if ok and _zero_lower_bound(graph, reader) else None


def check_ignore(graph: Graph, ignore) -> None:
    names = [node.name for node in graph.nodes() if not (node.is_input or node.is_constant)]
    unknown = [name for name in ignore if name not in graph]
    if unknown:
        hints = "; ".join(f"{name!r}: close names {difflib.get_close_matches(name, names, n=5, cutoff=0.5) or 'none'}"
                          for name in unknown)
        raise QuantizationError(f"ignore names node(s) not in graph {graph.name!r} (after folding constants and "
                                f"BatchNormalization into Conv): {hints}")


def plan_quantization(graph: Graph, ignore=()) -> Plan:
    """Which nodes are quantized and which values get QuantizeLinear/DequantizeLinear pairs."""
    check_ignore(graph, ignore)
    ignore = set(ignore)
    plan = Plan()
    candidates = [node for node in graph.topological_order()
                  if node.name not in ignore and _quantizable(graph, node)]
    quantized: set[str] = set()
    read = lambda value: any(reader in quantized for reader, _ in graph.uses(value))  # noqa: E731
    absorbed = {}
    for node in reversed(candidates):  # readers first: whether a sum is worth quantizing depends on them
        output = Value(node.name, 0)
        activation = None if node.op_type in SHARES_INPUT_PARAMS else _absorbed(graph, output, ignore)
        observed = output if activation is None else Value(activation.name)
        if node.op_type in JOINS and not (_joins_activations(graph, node) and read(observed)):
            continue
        quantized.add(node.name)
        absorbed[node.name] = activation
    order = [node for node in candidates if node.name in quantized]
    outputs = {}
    for node in order:
        output, activation = Value(node.name, 0), absorbed[node.name]
        if activation is not None and read(Value(activation.name)):
            plan.removed[activation.name] = output
            outputs[node.name] = Value(activation.name)
        else:
            outputs[node.name] = output
    for node in order:
        plan.nodes.append(node.name)
        inputs = [v for v in graph.input_values(node) if _activation(graph, v)]
        for value in inputs:
            source = plan.source(value)
            plan.tensors.setdefault(source, QuantizedTensor(source, value, source.node))
        observed = outputs[node.name]
        shares = plan.source(inputs[0]) if node.op_type in SHARES_INPUT_PARAMS else None
        plan.tensors[Value(node.name)] = QuantizedTensor(Value(node.name), observed, node.name, shares, read(observed))
    return plan


@register_pass("quantize-static")
@dataclass(frozen=True)
class QuantizeStatic:
    """`ranges`: value name -> (low, high) for every value `plan_quantization(...).measured()` lists;
    `ignore`: node names kept float."""

    ranges: dict = field(default_factory=dict)
    ignore: tuple = ()

    def __call__(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        plan = plan_quantization(graph, self.ignore)
        missing = [graph.value_name(v) for v in plan.measured() if graph.value_name(v) not in self.ranges]
        if missing:
            raise QuantizationError(f"no calibration range for value(s) {missing}: measure "
                                    "plan_quantization(graph).measured() first")
        paired = [tensor for tensor in plan.tensors.values() if tensor.paired]
        params = {}
        for tensor in paired:  # ranges are read by name before removals change the graph
            if tensor.shares is None:
                params[tensor.source] = activation_params(*self.ranges[graph.value_name(tensor.observed)])
        for tensor in paired:
            if tensor.shares is not None:
                params[tensor.source] = params[tensor.shares]
        linear = {name: plan.source(graph.input_values(name)[0]) for name in plan.nodes
                  if graph.node(name).op_type in LINEAR}
        for name, value in plan.removed.items():
            graph.replace_all_uses(Value(name, 0), value)
            graph.remove_node(name)
        for tensor in paired:
            _insert_pair(graph, tensor.source, params[tensor.source])
        for name, source in linear.items():
            _quantize_weights(graph, graph.node(name), params[source].scale)
        for name in plan.nodes:
            node = graph.node(name)
            if node.op_type == "MaxPool" and (node.version or 0) < MAXPOOL_8BIT_VERSION:
                node.version = MAXPOOL_8BIT_VERSION  # as ORT's opset upgrade: the pair may move across it
        return graph


def _insert_pair(graph: Graph, source: Value, params: ActivationParams) -> None:
    name = graph.value_name(source)
    value_type = graph.type_of(source)
    scale = graph.add_constant(np.array(params.scale, np.float32), f"{name}_scale")
    zero_point = graph.add_constant(np.array(params.zero_point, np.uint8), f"{name}_zero_point")
    quantize = graph.add_node("QuantizeLinear", [source, scale, zero_point], version=QDQ_VERSION,
                              outputs=[TensorType("uint8", value_type.shape)], name=f"{name}_QuantizeLinear",
                              output_names=[f"{name}_quantized"])
    dequantize = graph.add_node("DequantizeLinear", [Value(quantize.name), scale, zero_point], version=QDQ_VERSION,
                                outputs=[value_type], name=f"{name}_DequantizeLinear",
                                output_names=[f"{name}_dequantized"])
    graph.replace_all_uses(source, Value(dequantize.name))
    graph.set_input(quantize, 0, source)


def _dequantize_constant(graph: Graph, node: Node, index: int, array: np.ndarray, scale: np.ndarray,
                         axis: int, float_type: TensorType) -> None:
    name = graph.value_name(graph.input_values(node)[index])
    quantized = graph.add_constant(array, f"{name}_quantized")
    scale = graph.add_constant(scale, f"{name}_scale")
    zero_point = graph.add_constant(np.zeros(array.shape[axis], array.dtype), f"{name}_zero_point")
    dequantize = graph.add_node("DequantizeLinear", [quantized, scale, zero_point], {"axis": axis},
                                version=QDQ_VERSION, outputs=[float_type], name=f"{name}_DequantizeLinear")
    graph.set_input(node, index, Value(dequantize.name))


def _quantize_weights(graph: Graph, node: Node, input_scale: np.float32) -> None:
    """int8 weights (and int32 bias) of a quantized Conv/MatMul/Gemm with constant weights."""
    inputs = graph.input_values(node)
    weights = graph.constant_value(inputs[1])
    if node.op_type == "Conv":
        axis = 0
    elif node.op_type == "Gemm":
        axis = 0 if node.attrs.get("transB", 0) else 1
    else:
        axis = weights.ndim - 1
    bias = graph.constant_value(inputs[2]) if len(inputs) > 2 else None  # Conv's B, Gemm's C; MatMul has none
    if bias is not None and (bias.dtype != np.float32 or bias.shape != (weights.shape[axis],)):
        bias = None  # a Gemm C of another shape stays float
    linear = quantize_linear_weights(weights, axis, input_scale, bias)
    _dequantize_constant(graph, node, 1, linear.weights, linear.scale, axis, graph.type_of(inputs[1]))
    if bias is not None:
        _dequantize_constant(graph, node, 2, linear.bias, linear.bias_scale, 0, graph.type_of(inputs[2]))
