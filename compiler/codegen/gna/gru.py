"""GRU lowered to GNA layers, with the machinery of the LSTM (recurrent.py): per-column input scales,
gates as AFFINE layers with sigmoid/tanh PWL tables, and each product of two run-time values as
quarter squares, a·b = ((a + b)^2 - (a - b)^2) / 4.

ONNX's default GRU (linear_before_reset 0), per step t, over slots of 32 elements:

    row t of X = [x(t) | h(t-1)],  row t of Y = [x(t) | r·h(t-1)]   (two COPYs put every x(t) in place)
    U[H]        = h(t-1)                                   COPY from row t of X
    U[Z, R]     = sigmoid(W_zr x + R_zr h + b_zr)          AFFINE over row t of X
    U[P0, P1]   = square([r + h, r - h])                   AFFINE over U[R, H]
    r·h         = (P0 - P1) / 4                            AFFINE -> row t of Y
    U[HT]       = tanh(W_h x + R_h (r·h) + b_h)            AFFINE over row t of Y
    U[Q0, Q1]   = square([z + h - ht, z - h + ht])         AFFINE over U[Z, R, H, HT]
    h(t)        = ht + (Q0 - Q1) / 4                       AFFINE over U[HT, Q0, Q1] -> row t+1 of X

since h(t) = (1 - z)·ht + z·h(t-1) = ht + z·(h(t-1) - ht).
"""

from __future__ import annotations

import numpy as np

from compiler.codegen.gna import pwl as pwl_design
from compiler.codegen.gna.layers import Copy
from compiler.codegen.gna.lowering import Lowering
from compiler.codegen.gna.quantize import INPUT_PEAK
from compiler.codegen.gna.recurrent import SQUARE_BUDGET, Cell, _input_samples, _Params, _sigmoid, _Stage
from compiler.ir.graph import Node, Value

Z, R, H, HT, Q0, Q1, P0, P1 = range(8)  # the slots of U
ONNX_GATES = {"z": 0, "r": 1, "h": 2}  # ONNX's zrh order of W, R and B
RH_RANGE = (-1.0, 2.0)  # r ± h with r in (0, 1), h in (-1, 1)
ZH_RANGE = (-2.0, 3.0)  # z ± (h - ht)


def _gru_ranges(params: _Params, xs: np.ndarray) -> tuple[tuple, tuple]:
    """Calibrated pre-activation ranges of the sigmoid gates (z, r) and of the candidate."""
    h = np.zeros((len(xs), params.hidden))
    sig, cand = [np.inf, -np.inf], [np.inf, -np.inf]
    for t in range(xs.shape[1]):
        (wz, rz, bz), (wr, rr, br), (wh, rh, bh) = (params.gate(i) for i in ONNX_GATES.values())
        az, ar = xs[:, t] @ wz.T + h @ rz.T + bz, xs[:, t] @ wr.T + h @ rr.T + br
        z, r = _sigmoid(az), _sigmoid(ar)
        ah = xs[:, t] @ wh.T + (r * h) @ rh.T + bh
        sig = [min(sig[0], az.min(), ar.min()), max(sig[1], az.max(), ar.max())]
        cand = [min(cand[0], ah.min()), max(cand[1], ah.max())]
        h = np.tanh(ah) + z * (h - np.tanh(ah))
    return tuple(sig), tuple(cand)


class _Gru(Cell):
    """The buffers and stages of one GRU node; `lower` emits every step."""

    gate_order = ONNX_GATES

    def __init__(self, state: Lowering, node: Node):
        super().__init__(state, node)
        sigmoid, candidate = _gru_ranges(self.params, _input_samples(state, node))
        rh_scale, zh_scale = INPUT_PEAK / RH_RANGE[1] ** 2, INPUT_PEAK / ZH_RANGE[1] ** 2
        eye = np.eye(self.hidden)
        self.stages = {
            "zr": self._gates("zr", "Sigmoid", sigmoid),
            "rh_sq": self._stage(2, 2, {(0, 0): eye, (0, 1): eye, (1, 0): eye, (1, 1): -eye}, [INPUT_PEAK] * 2,
                                 "Pow", RH_RANGE, rh_scale, SQUARE_BUDGET),
            "rh": self._stage(1, 2, {(0, 0): eye / 4, (0, 1): -eye / 4}, [rh_scale] * 2, "Identity", (-1.0, 1.0),
                              INPUT_PEAK, state.budget),
            "ht": self._gates("h", "Tanh", candidate),
            "zh_sq": self._stage(2, 4, {(0, Z): eye, (0, H): eye, (0, HT): -eye, (1, Z): eye, (1, H): -eye,
                                        (1, HT): eye}, [INPUT_PEAK] * 4, "Pow", ZH_RANGE, zh_scale, SQUARE_BUDGET),
            "h": self._stage(1, 3, {(0, 0): eye, (0, 1): eye / 4, (0, 2): -eye / 4}, [INPUT_PEAK, zh_scale, zh_scale],
                             "Identity", (-1.0, 1.0), INPUT_PEAK, state.budget),
        }
        name = node.name
        self.x = state.buffer(f"{name}.rows", (self.steps + 1) * self.row)
        self.y = state.buffer(f"{name}.reset_rows", self.steps * self.row)
        self.u = state.buffer(f"{name}.u", 8 * self.slot)

    def _stage(self, rows: int, slots: int, blocks: dict, scales: list, fn: str, acc_range: tuple, out_scale: float,
               budget: float) -> _Stage:
        """An AFFINE over `slots` consecutive slots into `rows` slots: (row slot, column slot) -> [hidden, hidden]."""
        matrix = self._embed(rows, slots * self.slot, {(row, column * self.slot): block
                                                        for (row, column), block in blocks.items()})
        function = pwl_design.function(fn, exponent=2.0) if fn == "Pow" else pwl_design.function(fn)
        return _Stage.build(self.state, matrix, np.repeat(scales, self.slot), np.zeros(len(matrix)), function,
                            acc_range, out_scale, budget)

    def slot_at(self, slot: int):
        return self.u.at(slot * self.slot * 2)

    def lower(self) -> None:
        self.copy_frames(self.x, "frames")
        self.copy_frames(self.y, "reset_frames")
        for t in range(self.steps):
            self.step(t)
        for index, tensor in zip(range(len(self.node.outputs)), self.hidden_outputs(self.x)):
            self.state.tensors[Value(self.node.name, index)] = tensor

    def step(self, t: int) -> None:
        x_row, y_row = self.x.at(t * self.row * 2), self.y.at(t * self.row * 2)
        h_prev = self.x.at((t * self.row + self.x_width) * 2)
        self.state.layers.append(Copy(f"{self.node.name}.t{t}.h", h_prev, self.slot_at(H), rows=1, columns=self.slot))
        operands = {"zr": (x_row, self.slot_at(Z)), "rh_sq": (self.slot_at(R), self.slot_at(P0)),
                    "rh": (self.slot_at(P0), self.y.at((t * self.row + self.x_width) * 2)),
                    "ht": (y_row, self.slot_at(HT)), "zh_sq": (self.slot_at(Z), self.slot_at(Q0)),
                    "h": (self.slot_at(HT), self.x.at(((t + 1) * self.row + self.x_width) * 2))}
        for key, (source, target) in operands.items():
            self.stages[key].emit(self.state, f"{self.node.name}.t{t}.{key}", source, target)


def lower_gru(state: Lowering, node: Node) -> None:
    _Gru(state, node).lower()
