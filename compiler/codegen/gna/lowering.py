"""Lowers an optimized float graph to a quantized GNA `Program` (layers.py).

Every value becomes a `Tensor`: a buffer, a scale factor, a dtype, and `where`, an int array of the
value's logical shape holding each element's index inside the buffer. Reshape, Flatten, Squeeze,
Unsqueeze, Transpose, Split and Slice only rearrange `where` (no layer); Concat copies its parts into
one buffer (movement.py). Weighted layers read their input through it (an affine layer's weight
columns are permuted to match, so Flatten after a conv costs nothing) and write rows padded to
multiples of 8 elements. Only where a layer needs a
particular order (a convolution's [length, channels] input, an output endpoint's rows) is a
TRANSPOSE emitted.

A weighted layer (AFFINE, CONV1D, DIAGONAL) absorbs a following Add of a constant bias and then
the activation after it, as its PWL table (`fusion`). Its output stays int32 only when it is a
graph output with no activation and nothing else reads it; otherwise it gets a PWL (identity when
there is no activation) so the next layer can read int16. The per-op rules are in ops.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.codegen.gna import pwl as pwl_design
from compiler.calibration_data import sample_values
from compiler.codegen.gna.layers import Buffer, Copy, Diagonal, Endpoint, Program, Transpose
from compiler.codegen.gna.quantize import (ACTIVATION_SCALE, activation_scale, input_scale, quantize_bias,
                                           quantize_weights)
from compiler.ir.graph import Graph, Node, Value

ACTIVATION_OPS = frozenset(pwl_design.ACTIVATIONS) - {"Identity"}


class GnaLoweringError(ValueError):
    """A node the GNA ISA cannot express as it is; the message names it and says why. `lower` sets `node`."""

    node: Node | None = None


def pad8(n: int) -> int:
    return -(-int(n) // 8) * 8


@dataclass
class Tensor:
    buffer: Buffer
    where: np.ndarray
    scale: float
    dtype: str = "int16"

    def rows(self, multiple: int = 8) -> tuple[int, int] | None:
        """(rows, row stride) when the logical tensor is laid out row by row from element 0 with a
        stride that is a multiple of `multiple` elements; None otherwise."""
        shape = self.where.shape
        columns = shape[-1] if shape else 1
        flat = self.where.reshape(-1, columns)
        stride = pad8(columns) if len(flat) == 1 else int(flat[1, 0] - flat[0, 0])
        if stride % multiple or stride < columns:
            return None
        expected = np.arange(len(flat))[:, None] * stride + np.arange(columns)[None, :]
        return (len(flat), stride) if np.array_equal(flat, expected) else None


@dataclass(frozen=True)
class Fusion:
    """What a weighted node absorbs: `bias` (an Add node whose other input is a constant), `activation`
    (its node), `value` (the last absorbed node's output, which the layer's output stands for) and
    whether the output stays int32."""

    bias: Node | None
    activation: Node | None
    value: Value
    int32: bool


@dataclass
class Lowering:
    """The state of one lowering: the graph, calibrated ranges, options and what has been emitted."""

    graph: Graph
    ranges: dict
    weights: str = "int16"
    budget: float = pwl_design.DEFAULT_BUDGET
    out_scale: float = ACTIVATION_SCALE
    layers: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)
    absorbed: set = field(default_factory=set)
    notes: dict = field(default_factory=dict)  # node name -> scales, PWL design, the value it computes
    origins: list = field(default_factory=list)  # per layer, the node (or output endpoint) it was emitted for
    generation: str = "GNA2.0"
    samples: dict = field(default_factory=dict)  # graph input name -> [count, *shape] calibration samples
    _count: int = 0

    # ----- values --------------------------------------------------------------------
    def peak(self, value: Value) -> float:
        low, high = self.ranges[value]
        return max(abs(low), abs(high))

    def sample_values(self, value: Value) -> np.ndarray:
        """[count, *shape]: `value` over the calibration samples (recurrent layers measure their inner state)."""
        return sample_values(self.graph, [value], self.samples)[0]

    def constant(self, value: Value | None) -> np.ndarray | None:
        array = self.graph.constant_value(value)
        return None if array is None else np.asarray(array, np.float64)

    def tensor(self, node: Node, index: int = 0) -> Tensor:
        """The int16 tensor feeding input `index` of `node`."""
        value = self.graph.input_values(node)[index]
        tensor = self.tensors[value]
        if tensor.dtype != "int16":
            raise GnaLoweringError(f"node {node.name!r} ({node.op_type}) reads an int32 accumulator; only graph "
                                   "outputs may stay int32")
        return tensor

    def buffer(self, name: str, elements: int, dtype: str = "int16") -> Buffer:
        self._count += 1
        return Buffer(f"{name}#{self._count}", pad8(elements) * np.dtype(dtype).itemsize)

    def users(self, value: Value) -> list[Node]:
        return [self.graph.node(name) for name, _ in self.graph.uses(value)]

    # ----- fusion --------------------------------------------------------------------
    def _single_user(self, value: Value) -> Node | None:
        users = self.users(value)
        if len(users) != 1 or self.graph.is_graph_output(value):
            return None
        return users[0]

    def fusion(self, node: Node, bias_fits) -> Fusion:
        """Look ahead from a weighted node: an Add of a constant `bias_fits(array)` accepts, then an activation."""
        value, bias, activation = Value(node.name, 0), None, None
        user = self._single_user(value)
        if user is not None and user.op_type in ("Add", "Sub"):
            inputs = self.graph.input_values(user)
            others = [v for v in inputs if v != value]
            constant = self.constant(others[0]) if len(others) == 1 else None
            if constant is not None and (user.op_type == "Add" or inputs[0] == value) and bias_fits(constant):
                bias, value = user, Value(user.name, 0)
                user = self._single_user(value)
        if user is not None and user.op_type in ACTIVATION_OPS and self.activation_function(user) is not None:
            activation, value = user, Value(user.name, 0)
        int32 = (activation is None and self.graph.is_graph_output(value) and not self.users(value))
        return Fusion(bias, activation, value, int32)

    def bias_of(self, fusion: Fusion) -> np.ndarray | None:
        """The absorbed Add's constant (negated for Sub)."""
        if fusion.bias is None:
            return None
        inputs = self.graph.input_values(fusion.bias)
        constant = next(self.constant(v) for v in inputs if self.constant(v) is not None)
        return -constant if fusion.bias.op_type == "Sub" else constant

    def activation_function(self, node: Node) -> pwl_design.Function | None:
        """The designer's Function for an activation node (None when its parameters are not constants)."""
        attrs = dict(node.attrs)
        inputs = self.graph.input_values(node)
        if node.op_type == "Clip":
            for index, key in ((1, "min"), (2, "max")):
                if index < len(inputs) and inputs[index] is not None:
                    bound = self.constant(inputs[index])
                    if bound is None:
                        return None
                    attrs[key] = float(bound)
        if node.op_type == "Pow":
            exponent = self.constant(inputs[1])
            if exponent is None or exponent.size != 1:
                return None
            attrs["exponent"] = float(exponent.reshape(()))
        return pwl_design.function(node.op_type, **attrs)

    def output_stage(self, node: Node, fusion: Fusion, in_scale: float, weight_scale: float, name: str | None = None):
        """(PWL table or None, output dtype, output scale) for `node`'s accumulator at in_scale · weight_scale;
        records the scales and the PWL design for the report under the layer's `name` (default: the node's; a
        layer named otherwise, e.g. a rescale before a concatenation, does not compute the node's value)."""
        acc_scale = in_scale * weight_scale
        name = name or node.name
        self.notes[name] = {"value": fusion.value if name == node.name else None, "in_scale": in_scale,
                            "weight_scale": weight_scale, "out_scale": acc_scale, "pwl": None}
        if fusion.int32:
            return None, "int32", acc_scale
        fn = (self.activation_function(fusion.activation) if fusion.activation is not None
              else pwl_design.function("Identity"))
        out_scale = activation_scale(self.peak(fusion.value), self.out_scale)
        low, high = self.ranges[self.pre_activation(fusion)]
        design = pwl_design.design(fn, acc_scale, out_scale, low, high, self.budget)
        self.notes[name].update(out_scale=out_scale, pwl=design.as_dict())
        return design.pwl, "int16", out_scale

    def finish(self, node: Node, fusion: Fusion, tensor: Tensor) -> None:
        """Record the layer's output as the value of every absorbed node."""
        self.absorbed.update(n.name for n in (fusion.bias, fusion.activation) if n is not None)
        self.tensors[fusion.value] = tensor

    def pre_activation(self, fusion: Fusion) -> Value:
        """The value the fused activation reads (the accumulator after any absorbed bias)."""
        return self.graph.input_values(fusion.activation)[0] if fusion.activation else fusion.value

    def weights_for(self, array: np.ndarray, in_scale: float, node: Node, fusion: Fusion):
        """quantize_weights, capped by the larger accumulator range: before and after the absorbed bias.
        A standalone activation's DIAGONAL (the node itself is the activation) reads its input's range."""
        before = self.graph.input_values(node)[0] if node is fusion.activation else Value(node.name, 0)
        peak = max(self.peak(before), self.peak(self.pre_activation(fusion)))
        return quantize_weights(array, in_scale, peak, self.weights)

    # ----- layouts -------------------------------------------------------------------
    def channels_last(self, node: Node, tensor: Tensor, channels: int, length: int,
                      pad: bool = False) -> tuple[Tensor, int]:
        """`tensor` (logical [1, channels, *spatial], `length` spatial elements) as a buffer of [length, padded
        channels] rows; returns the tensor and the padded channel count. A channel-major tensor is transposed by
        a TRANSPOSE layer; with `pad` its channels are first COPYed into a buffer of a multiple of 8 rows (the
        rest stays zero), so the transposed rows hold a multiple of 8 channels."""
        where = tensor.where.reshape(channels, length)
        for padded in (channels, pad8(channels)):
            if (not pad or padded % 8 == 0) and np.array_equal(
                    where.T, np.arange(length)[:, None] * padded + np.arange(channels)[None, :]):
                return tensor, padded
        rows = Tensor(tensor.buffer, where, tensor.scale).rows()
        if rows is None or (channels * rows[1]) % 8:
            raise GnaLoweringError(f"node {node.name!r} ({node.op_type}): its input {list(tensor.where.shape)} is not "
                                   "laid out as channel rows of 8-element multiples that a TRANSPOSE can bring to "
                                   "[length, channels]; give the model a channel-last input (or a width that is a "
                                   "multiple of 8)")
        source, padded = tensor.buffer, channels
        if pad and channels % 8:
            padded = pad8(channels)
            source = self.buffer(f"{node.name}.channels", padded * rows[1])
            self.layers.append(Copy(f"{node.name}.channels", tensor.buffer, source, rows=channels, columns=rows[1]))
        out = self.buffer(f"{node.name}.transpose", padded * rows[1])
        self.layers.append(Transpose(f"{node.name}.transpose", source, out, rows=padded, columns=rows[1]))
        positions = np.arange(length)[:, None] * padded + np.arange(channels)[None, :]
        return Tensor(out, positions.T.reshape(tensor.where.shape), tensor.scale), padded

    def as_rows(self, name: str, tensor: Tensor) -> Tensor:
        """`tensor` laid out row by row (for an output endpoint); a transposed 2-D layout gets a TRANSPOSE."""
        if tensor.rows(multiple=1) is not None:
            return tensor
        shape = tensor.where.shape
        columns = shape[-1] if shape else 1
        flat = tensor.where.reshape(-1, columns)
        rows = len(flat)
        for stride in range(rows, rows + 8):
            if np.array_equal(flat, np.arange(columns)[None, :] * stride + np.arange(rows)[:, None]):
                total = pad8(columns * stride)
                if tensor.dtype != "int16" or total != columns * stride:
                    break
                out = self.buffer(f"{name}.transpose", total)
                self.layers.append(Transpose(f"{name}.transpose", tensor.buffer, out, rows=columns, columns=stride))
                return Tensor(out, (np.arange(rows)[:, None] * columns + np.arange(columns)).reshape(shape),
                              tensor.scale)
        raise GnaLoweringError(f"output {name!r}: its elements are spread over the buffer in an order neither rows "
                               "nor a 2-D transpose of them; end the model with a layer that writes rows")

    def diagonal(self, node: Node, tensor: Tensor, scale: np.ndarray, shift: np.ndarray, fusion: Fusion,
                 name: str | None = None) -> Tensor:
        """y = x · scale + shift elementwise (constants broadcast to the logical shape) as one DIAGONAL
        over the whole buffer, with the fused output stage; the layer is named `name` (default: the node's)."""
        name = name or node.name
        elements = tensor.buffer.nbytes // 2
        shape = tensor.where.shape
        w = np.zeros(elements)
        b = np.zeros(elements)
        w[tensor.where.ravel()] = np.broadcast_to(scale, shape).ravel()
        b[tensor.where.ravel()] = np.broadcast_to(shift, shape).ravel()
        quantized = self.weights_for(w, tensor.scale, node, fusion)
        table, dtype, out_scale = self.output_stage(node, fusion, tensor.scale, quantized.scale, name)
        acc_scale = tensor.scale * quantized.scale
        out = self.buffer(name, elements, dtype)
        self.layers.append(Diagonal(name, tensor.buffer, out, quantized.values, quantize_bias(b, acc_scale),
                                    quantized.multipliers, table, out_scale))
        return Tensor(out, tensor.where, out_scale, dtype)

    # ----- endpoints -----------------------------------------------------------------
    def add_input(self, name: str) -> Endpoint:
        shape = tuple(self.graph.node(name).outputs[0].shape)
        columns = shape[-1] if shape else 1
        rows = int(np.prod(shape[:-1], dtype=np.int64)) if shape else 1
        stride = pad8(columns)
        scale = input_scale(self.peak(Value(name, 0)))
        buffer = self.buffer(name, rows * stride)
        where = (np.arange(rows)[:, None] * stride + np.arange(columns)[None, :]).reshape(shape)
        self.tensors[Value(name, 0)] = Tensor(buffer, where, scale)
        return Endpoint(name, buffer, shape or (1,), scale, row_stride=stride)

    def add_output(self, name: str, value: Value) -> Endpoint:
        """The endpoint for `value`: its rows where they are (from the aligned element before its first, e.g. the
        hidden-state part of an LSTM's rows), or rows a TRANSPOSE writes."""
        tensor = self.tensors[value]
        base = int(tensor.where.min()) // 32 * 32 if tensor.where.size else 0
        shifted = Tensor(tensor.buffer, tensor.where - base, tensor.scale, tensor.dtype)
        if base and shifted.rows(multiple=1) is not None:
            place = tensor.buffer.at(base * np.dtype(tensor.dtype).itemsize)
            tensor = shifted
        else:
            tensor = self.as_rows(name, tensor)
            place = tensor.buffer
        return Endpoint(name, place, tensor.where.shape or (1,), tensor.scale, dtype=tensor.dtype,
                        row_stride=tensor.rows(multiple=1)[1])


def lower(graph: Graph, ranges: dict, weights: str = "int16", budget: float = pwl_design.DEFAULT_BUDGET,
          generation: str = "GNA2.0", samples: dict | None = None) -> tuple[Program, Lowering]:
    """The Program for `graph` (already through the gna pipeline and checked by `unsupported`)."""
    from compiler.codegen.gna.ops import lowering_for
    from compiler.codegen.gna.recurrent import state_input_ranges

    state = Lowering(graph, {**ranges, **state_input_ranges(graph)}, weights, budget, generation=generation,
                     samples=samples or {})
    inputs = tuple(state.add_input(name) for name in graph.inputs)
    for node in graph.topological_order():
        if node.is_input or node.is_constant or node.name in state.absorbed:
            continue
        first = len(state.layers)
        try:
            lowering_for(node).lower(state, node)
        except GnaLoweringError as error:
            error.node = node
            raise
        state.origins += [node.name] * (len(state.layers) - first)
    outputs = tuple(state.add_output(name, value) for name, value in graph.outputs)
    state.origins += [None] * (len(state.layers) - len(state.origins))
    if not state.layers:
        raise GnaLoweringError("the model computes nothing the GNA runs (no layers); it cannot be compiled for gna")
    return Program(inputs, outputs, tuple(state.layers), state.generation), state
