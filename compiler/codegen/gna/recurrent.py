"""RNN and LSTM lowered to GNA layers (docs/gna-isa.md): RECURRENT for RNN; for LSTM, per time step,
AFFINE layers for the gates and for products of run-time values, and a DIAGONAL for tanh(c).

RNN (one activation, h(t) = f(W x(t) + R h(t-1) + b)) is exactly the RECURRENT op.

An LSTM needs elementwise products of run-time tensors (f·c, i·g, o·tanh c), which no GNA layer
computes: weights are constants. They are built from sums and a PWL square (quarter squares):
a·b = ((a + b)^2 - (a - b)^2) / 4. Per step t:

    row t of X = [x(t) | h(t-1)]                           (one COPY puts every x(t) in place)
    gates:  U_t[g]       = tanh(W_g x + R_g h + b_g)       AFFINE over row t, tanh PWL
            U_t[i, f, o] = sigmoid(...)                    AFFINE over row t, sigmoid PWL
    S1    = square([f + c, f - c, i + g, i - g])           AFFINE over U_t[g, c, i, f], square PWL
    c(t)  = (S1[0] - S1[1] + S1[2] - S1[3]) / 4            AFFINE -> U_{t+1}[c]
    U_t[tc] = tanh(c(t))                                   DIAGONAL, tanh PWL
    S2    = square([o + tc, o - tc])                       AFFINE over U_t[o, tc], square PWL
    h(t)  = (S2[0] - S2[1]) / 4                            AFFINE -> row t+1 of X

Buffer slots are 32 elements (64 bytes) wide so every slot and row address is aligned. Each slot
has its own scale; an AFFINE reading several slots divides each weight column by its input's scale,
so the accumulator's scale is the weight scale alone. Ranges come from a float run of the cell over
the calibration samples (gate inputs, the cell state), widened by MARGIN; gates, tanh and the
products' sums have analytic bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.codegen.gna import pwl as pwl_design
from compiler.codegen.gna.layers import Affine, Buffer, Copy, Diagonal, Place, Recurrent
from compiler.codegen.gna.lowering import GnaLoweringError, Lowering, Tensor
from compiler.codegen.gna.quantize import INPUT_PEAK, Weights, quantize_bias, quantize_weights
from compiler.ir.graph import Graph, Node, Value

MARGIN = 1.5  # calibrated cell-state and accumulator ranges are widened by this factor
SQUARE_BUDGET = 5e-5  # the products' square tables: their error enters every step's state
DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def pad32(n: int) -> int:
    return -(-int(n) // 32) * 32


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _peak(low: float, high: float) -> float:
    return max(abs(low), abs(high), 1e-6)


# ----- what can be lowered ------------------------------------------------------------------
def check_recurrent(graph: Graph, node: Node) -> str | None:
    """Why an RNN/GRU/LSTM node cannot be lowered (None when it can)."""
    attrs, values = node.attrs, graph.input_values(node)
    shape = tuple(graph.input_types(node)[0].shape)
    if attrs.get("layout", 0) != 0 or len(shape) != 3 or shape[1] != 1:
        return f"X of shape {list(shape)} (layout {attrs.get('layout', 0)}): GNA recurrent layers take one " \
               "sequence, [time, 1, features] with layout 0"
    if attrs.get("direction", "forward") != "forward":
        return f"direction={attrs['direction']}: GNA recurrent layers run forward; reverse the sequence in the model"
    activations = [a.capitalize() if a.islower() else a for a in attrs.get("activations", [])]
    if activations and activations != DEFAULT_ACTIVATIONS[node.op_type]:
        return f"activations {attrs['activations']}: lowered with the defaults {DEFAULT_ACTIVATIONS[node.op_type]} only"
    if attrs.get("clip") is not None or attrs.get("input_forget", 0):
        return "clip and input_forget have no GNA equivalent"
    if attrs.get("linear_before_reset", 0):
        return "linear_before_reset=1: lowered with the default (reset gate applied before the recurrence) only"
    for index, role in ((1, "W"), (2, "R"), (3, "B")):
        if index < len(values) and values[index] is not None and graph.constant_value(values[index]) is None:
            return f"{role} (input {index}) must be a constant: GNA layers multiply by stored weights"
    lens = graph.constant_value(values[4]) if len(values) > 4 and values[4] is not None else None
    if len(values) > 4 and values[4] is not None and (lens is None or np.any(lens != shape[0])):
        return "sequence_lens must be absent or a constant equal to the sequence length"
    for index, role in ((5, "initial_h"), (6, "initial_c"), (7, "P")):
        if index < len(values) and values[index] is not None and not (index == 5 and _state_input(graph, node)):
            constant = graph.constant_value(values[index])
            if constant is None or np.any(constant != 0):
                return f"{role} (input {index}) must be absent or zeros (an RNN's initial_h may also be a model " \
                       "input, e.g. a state variable): GNA layers start the recurrence from stored zeros"
    return None


def _state_input(graph: Graph, node: Node) -> Value | None:
    """The model input an RNN node's initial_h is, if it is one: the RECURRENT layer then takes that
    input's buffer as its state buffer, so the recurrence starts from the value the caller (or a state
    variable, compile(state=...)) gives."""
    values = graph.input_values(node)
    initial = values[5] if node.op_type == "RNN" and len(values) > 5 else None
    return initial if initial is not None and graph.node(initial.node).is_input else None


def state_input_ranges(graph: Graph) -> dict[Value, tuple[float, float]]:
    """The range of every model input that is an RNN's initial_h: the tanh range, so the input is
    quantized at the recurrent state's scale (INPUT_PEAK for 1.0)."""
    nodes = [node for node in graph.nodes() if node.op_type == "RNN" and node.domain == ""]
    return {value: (-1.0, 1.0) for value in (_state_input(graph, node) for node in nodes) if value is not None}


@dataclass(frozen=True)
class _Params:
    """An RNN/LSTM node's float parameters (one direction): W [G·H, K], R [G·H, H], b [G·H]."""

    w: np.ndarray
    r: np.ndarray
    b: np.ndarray
    hidden: int

    @classmethod
    def of(cls, state: Lowering, node: Node) -> "_Params":
        values = state.graph.input_values(node)
        w, r = state.constant(values[1])[0], state.constant(values[2])[0]
        bias = state.constant(values[3]) if len(values) > 3 and values[3] is not None else None
        b = np.zeros(len(w)) if bias is None else bias[0, :len(w)] + bias[0, len(w):]
        return cls(w, r, b, r.shape[1])

    def gate(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = slice(index * self.hidden, (index + 1) * self.hidden)
        return self.w[rows], self.r[rows], self.b[rows]


@dataclass(frozen=True)
class _Sequence:
    """A recurrent node's input as rows: step t's features sit at `columns` after element
    `base + t · stride` of `tensor.buffer` (`base` a multiple of 32 elements, so the rows' start is aligned)."""

    tensor: Tensor
    base: int
    columns: np.ndarray
    stride: int

    @property
    def width(self) -> int:
        """Elements a step's row spans from its start, padded to 8."""
        return -(-(int(self.columns.max()) + 1) // 8) * 8

    @classmethod
    def of(cls, state: Lowering, node: Node) -> "_Sequence":
        tensor = state.tensor(node)
        steps, _, features = tensor.where.shape
        where = tensor.where.reshape(steps, features)
        base = int(where.min()) // 32 * 32
        columns = where[0] - base
        stride = int(where[1, 0] - where[0, 0]) if steps > 1 else -(-(int(columns.max()) + 1) // 8) * 8
        if stride % 8 or stride <= columns.max() or not np.array_equal(
                where, where[0][None, :] + np.arange(steps)[:, None] * stride):
            raise GnaLoweringError(f"node {node.name!r} ({node.op_type}): its input {list(tensor.where.shape)} is "
                                   "not laid out as time steps a constant stride apart; put a layer that writes "
                                   "rows before it")
        return cls(tensor, base, columns, stride)

    def place(self) -> Place:
        return self.tensor.buffer.at(self.base * 2)


def _input_samples(state: Lowering, node: Node) -> np.ndarray:
    """[samples, time, features] float64: the node's input over the calibration samples."""
    samples = state.sample_values(state.graph.input_values(node)[0])
    return samples.reshape(len(samples), samples.shape[1], -1).astype(np.float64)


# ----- layers with per-column input scales ---------------------------------------------------
@dataclass(frozen=True)
class _Stage:
    """An AFFINE (or DIAGONAL) computing a real matrix over inputs at per-column scales, plus a bias, then a PWL
    table into int16: quantized once, emitted at every step with that step's operands."""

    weights: Weights
    bias: np.ndarray
    design: pwl_design.Design
    diagonal: bool

    @classmethod
    def build(cls, state: Lowering, matrix: np.ndarray, in_scales: np.ndarray, bias: np.ndarray,
              fn: pwl_design.Function, acc_range: tuple, out_scale: float, budget: float) -> "_Stage":
        """`matrix` [outputs, inputs] (a vector for a DIAGONAL); `acc_range` the real accumulator range. The
        accumulator's scale keeps the table's whole design range (e.g. sigmoid's -10..10) inside int32."""
        low, high = acc_range
        diagonal = matrix.ndim == 1
        effective = matrix / (in_scales if diagonal else in_scales[None, :])
        peak = max(MARGIN * _peak(low, high), _peak(*pwl_design.design_range(fn, low, high)))
        weights = quantize_weights(effective, 1.0, peak, state.weights)
        design = pwl_design.design(fn, weights.scale, out_scale, low, high, budget)
        return cls(weights, quantize_bias(bias, weights.scale), design, diagonal)

    def emit(self, state: Lowering, name: str, source: Place, target: Place) -> None:
        layer = Diagonal if self.diagonal else Affine
        state.layers.append(layer(name, source, target, self.weights.values, self.bias, self.weights.multipliers,
                                  self.design.pwl, self.design.out_scale))
        state.notes[name] = {"value": None, "in_scale": None, "weight_scale": self.weights.scale,
                             "out_scale": self.design.out_scale, "pwl": self.design.as_dict()}


# ----- RNN -------------------------------------------------------------------------------------
def lower_rnn(state: Lowering, node: Node) -> None:
    params, sequence = _Params.of(state, node), _Sequence.of(state, node)
    tensor, stride = sequence.tensor, sequence.stride
    steps, hidden = tensor.where.shape[0], params.hidden
    padded = -(-hidden // 8) * 8
    xs = _input_samples(state, node)
    initial = _state_input(state.graph, node)
    h = np.zeros((len(xs), hidden)) if initial is None else \
        np.clip(state.sample_values(initial).reshape(len(xs), hidden), -1.0, 1.0)
    low, high = np.inf, -np.inf
    for t in range(steps):
        z = xs[:, t] @ params.w.T + h @ params.r.T + params.b
        low, high, h = min(low, z.min()), max(high, z.max()), np.tanh(z)
    matrix = np.zeros((padded, stride + padded))
    matrix[:hidden, sequence.columns] = params.w
    matrix[:hidden, stride:stride + hidden] = params.r
    in_scales = np.concatenate([np.full(stride, tensor.scale), np.full(padded, INPUT_PEAK)])
    stage = _Stage.build(state, matrix, in_scales, np.pad(params.b, (0, padded - hidden)),
                         pwl_design.function("Tanh"), (low, high), INPUT_PEAK, state.budget)
    out = state.buffer(node.name, steps * padded)
    last = state.buffer(f"{node.name}.state", padded) if initial is None else state.tensors[initial].buffer
    state.layers.append(Recurrent(node.name, sequence.place(), out, stage.weights.values, stage.bias,
                                  stage.weights.multipliers, stage.design.pwl, INPUT_PEAK, state=last, frames=steps))
    state.notes[node.name] = {"value": Value(node.name, 0), "in_scale": tensor.scale,
                              "weight_scale": stage.weights.scale, "out_scale": INPUT_PEAK,
                              "pwl": stage.design.as_dict()}
    rows = np.arange(steps)[:, None] * padded + np.arange(hidden)[None, :]
    state.tensors[Value(node.name, 0)] = Tensor(out, rows.reshape(steps, 1, 1, hidden), INPUT_PEAK)
    if len(node.outputs) > 1:
        state.tensors[Value(node.name, 1)] = Tensor(last, np.arange(hidden).reshape(1, 1, hidden), INPUT_PEAK)


# ----- LSTM ------------------------------------------------------------------------------------
G, C, I, F, O, TC = range(6)  # the slots of a step's buffer U_t
ONNX_GATES = {"i": 0, "o": 1, "f": 2, "c": 3}  # ONNX's iofc order of W, R and B


@dataclass(frozen=True)
class _LstmRanges:
    """Calibrated ranges: the sigmoid gates' and the candidate's pre-activations and the cell state's peak."""

    sigmoid: tuple
    candidate: tuple
    cell: float


def _lstm_ranges(params: _Params, xs: np.ndarray) -> _LstmRanges:
    h = c = np.zeros((len(xs), params.hidden))
    sig, cand, cell = [np.inf, -np.inf], [np.inf, -np.inf], 0.0
    for t in range(xs.shape[1]):
        z = {k: xs[:, t] @ w.T + h @ r.T + b for k, (w, r, b) in ((k, params.gate(i)) for k, i in ONNX_GATES.items())}
        for bound, values in ((sig, (z["i"], z["f"], z["o"])), (cand, (z["c"],))):
            bound[0] = min(bound[0], *(v.min() for v in values))
            bound[1] = max(bound[1], *(v.max() for v in values))
        c = _sigmoid(z["f"]) * c + _sigmoid(z["i"]) * np.tanh(z["c"])
        h = _sigmoid(z["o"]) * np.tanh(c)
        cell = max(cell, float(np.abs(c).max()))
    return _LstmRanges(tuple(sig), tuple(cand), cell)


class Cell:
    """What the LSTM and GRU lowerings share: the node's parameters and input rows, the geometry of rows
    [x(t) | state] and of 32-element slots, and the gate stages over such a row (`gate_order`: ONNX's letters)."""

    gate_order: dict = {}

    def __init__(self, state: Lowering, node: Node):
        self.state, self.node, self.params = state, node, _Params.of(state, node)
        self.sequence = _Sequence.of(state, node)
        self.steps = self.sequence.tensor.where.shape[0]
        self.hidden, self.slot = self.params.hidden, pad32(self.params.hidden)
        self.x_width = pad32(self.sequence.width)
        self.row = self.x_width + self.slot  # a row of X: [x(t) | h(t-1)]

    def _embed(self, rows: int, columns: int, blocks: dict) -> np.ndarray:
        """A [rows·slot, columns] matrix holding `blocks` ((row slot, first column) -> [hidden, n] array)."""
        matrix = np.zeros((rows * self.slot, columns))
        for (row, column), block in blocks.items():
            matrix[row * self.slot:row * self.slot + self.hidden, column:column + block.shape[1]] = block
        return matrix

    def _gates(self, keys: str, fn: str, acc_range: tuple) -> _Stage:
        """The gates `keys` (ONNX letters) from a row [x(t) | state], one slot each."""
        blocks, bias = {}, np.zeros(len(keys) * self.slot)
        for row, key in enumerate(keys):
            w, r, b = self.params.gate(self.gate_order[key])
            blocks[(row, 0)] = np.zeros((self.hidden, self.x_width))
            blocks[(row, 0)][:, self.sequence.columns] = w
            blocks[(row, self.x_width)] = r
            bias[row * self.slot:row * self.slot + self.hidden] = b
        in_scales = np.concatenate([np.full(self.x_width, self.sequence.tensor.scale), np.full(self.slot, INPUT_PEAK)])
        return _Stage.build(self.state, self._embed(len(keys), self.row, blocks), in_scales, bias,
                            pwl_design.function(fn), acc_range, INPUT_PEAK, self.state.budget)

    def hidden_outputs(self, rows: Buffer) -> list[Tensor]:
        """Y and Y_h: h(t) sits in the state part of row t + 1 of `rows`."""
        where = np.arange(1, self.steps + 1)[:, None] * self.row + self.x_width + np.arange(self.hidden)[None, :]
        return [Tensor(rows, where.reshape(self.steps, 1, 1, self.hidden), INPUT_PEAK),
                Tensor(rows, where[-1].reshape(1, 1, self.hidden), INPUT_PEAK)]

    def copy_frames(self, target: Buffer, suffix: str) -> None:
        """Every x(t) into its row of `target` (rows `self.row` apart)."""
        sequence = self.sequence
        if sequence.width > sequence.stride:
            raise GnaLoweringError(f"node {self.node.name!r} ({self.node.op_type}): its input rows are not 64-byte "
                                   "aligned; put a layer that writes rows before it")
        self.state.layers.append(Copy(f"{self.node.name}.{suffix}", sequence.place(), target, rows=self.steps,
                                      columns=sequence.width, in_stride=sequence.stride, out_stride=self.row))


class _Lstm(Cell):
    """The buffers, scales and stages of one LSTM node; `lower` emits every step."""

    gate_order = ONNX_GATES

    def __init__(self, state: Lowering, node: Node):
        super().__init__(state, node)
        ranges = _lstm_ranges(self.params, _input_samples(state, node))
        cell = MARGIN * max(ranges.cell, 1e-3)
        # Slot scales: gates in (0, 1) or (-1, 1) and h in (-1, 1) at full range; c within `cell`.
        self.scales = np.full(6, INPUT_PEAK)
        self.scales[C] = INPUT_PEAK / cell
        square_range = (-max(cell, 1.0), 1.0 + max(cell, 1.0))  # f ± c, i ± g, o ± tanh c
        square_scale = INPUT_PEAK / square_range[1] ** 2
        self.stages = {
            "g": self._gates("c", "Tanh", ranges.candidate),
            "ifo": self._gates("ifo", "Sigmoid", ranges.sigmoid),
            "fc_ig": self._square([(F, C), (I, G)], (G, C, I, F), square_range, square_scale),
            "c": self._quarter_difference(2, square_scale, cell, self.scales[C]),
            "tanh_c": _Stage.build(state, np.ones(self.slot), np.full(self.slot, self.scales[C]),
                                   np.zeros(self.slot), pwl_design.function("Tanh"), (-cell, cell), INPUT_PEAK,
                                   state.budget),
            "o_tc": self._square([(O, TC)], (O, TC), square_range, square_scale),
            "h": self._quarter_difference(1, square_scale, 1.0, INPUT_PEAK),
        }
        name = node.name
        self.x = state.buffer(f"{name}.rows", (self.steps + 1) * self.row)
        self.u = [state.buffer(f"{name}.u{t}", 6 * self.slot) for t in range(self.steps + 1)]
        self.s1, self.s2 = state.buffer(f"{name}.s1", 4 * self.slot), state.buffer(f"{name}.s2", 2 * self.slot)

    def _square(self, pairs: list, slots: tuple, acc_range: tuple, out_scale: float) -> _Stage:
        """square([a + b, a - b] for each (a, b) slot pair), reading the consecutive slots `slots`."""
        eye, blocks = np.eye(self.hidden), {}
        for index, (a, b) in enumerate(pairs):
            for sign, row in ((1.0, 2 * index), (-1.0, 2 * index + 1)):
                blocks[(row, slots.index(a) * self.slot)] = eye
                blocks[(row, slots.index(b) * self.slot)] = sign * eye
        matrix = self._embed(2 * len(pairs), len(slots) * self.slot, blocks)
        return _Stage.build(self.state, matrix, np.repeat(self.scales[list(slots)], self.slot),
                            np.zeros(len(matrix)), pwl_design.function("Pow", exponent=2.0), acc_range, out_scale,
                            SQUARE_BUDGET)

    def _quarter_difference(self, terms: int, in_scale: float, bound: float, out_scale: float) -> _Stage:
        """Σ over `terms` pairs of squares of (S[2k] - S[2k+1]) / 4: the products' sum."""
        eye = np.eye(self.hidden) / 4.0
        blocks = {(0, 2 * k * self.slot): eye for k in range(terms)}
        blocks.update({(0, (2 * k + 1) * self.slot): -eye for k in range(terms)})
        matrix = self._embed(1, 2 * terms * self.slot, blocks)
        return _Stage.build(self.state, matrix, np.full(len(matrix[0]), in_scale), np.zeros(len(matrix)),
                            pwl_design.function("Identity"), (-bound, bound), out_scale, self.state.budget)

    def at(self, t: int, slot: int) -> Place:
        return self.u[t].at(slot * self.slot * 2)

    def lower(self) -> None:
        state, node = self.state, self.node
        self.copy_frames(self.x, "frames")
        for t in range(self.steps):
            self.step(t)
        cell = C * self.slot + np.arange(self.hidden)
        outputs = [*self.hidden_outputs(self.x), Tensor(self.u[-1], cell.reshape(1, 1, self.hidden), self.scales[C])]
        for index in range(len(node.outputs)):
            state.tensors[Value(node.name, index)] = outputs[index]

    def step(self, t: int) -> None:
        row = self.x.at(t * self.row * 2)
        next_h = self.x.at(((t + 1) * self.row + self.x_width) * 2)
        operands = {"g": (row, self.at(t, G)), "ifo": (row, self.at(t, I)), "fc_ig": (self.u[t], self.s1),
                    "c": (self.s1, self.at(t + 1, C)), "tanh_c": (self.at(t + 1, C), self.at(t, TC)),
                    "o_tc": (self.at(t, O), self.s2), "h": (self.s2, next_h)}
        for key, (source, target) in operands.items():
            self.stages[key].emit(self.state, f"{self.node.name}.t{t}.{key}", source, target)


def lower_lstm(state: Lowering, node: Node) -> None:
    _Lstm(state, node).lower()
