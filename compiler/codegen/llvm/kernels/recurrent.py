"""RNN, GRU and LSTM: a work item runs one direction of a block of batch entries, step by step.

Steps depend on each other, so time is sequential inside an item; batch entries and the two
directions of a bidirectional layer are independent, so they make the work items (a fixed
block of entries each), and an item computes the same thing for any thread split.

A gate row of W or R is contiguous, so X_t·W^T and H·R^T are dot products over contiguous rows,
vectorized with reassociated sums. One loop computes the sums of all of a hidden unit's gate
rows against all of the block's entries, so each weight row loaded serves the whole block.
X·W^T does not depend on the state: it is computed for a chunk of steps at once (each W row
then comes from cache once per chunk), leaving H·R^T to the steps. The state, the chunk's
X·W^T and the GRU gates live in stack arrays.

`sequence_lens` is read at run time (clamped to [0, seq_length]): an entry runs its first
`len` steps (a reverse pass starts at step len-1), Y is zero past them, and Y_h/Y_c hold the
last computed step, or zeros when len is 0, as ONNX Runtime does.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce
from typing import NamedTuple

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, convert, element_type, load, store
from compiler.codegen.llvm.kernels.linear_algebra import rolled_range, smax, smin, stack_buffer
from compiler.codegen.llvm.kernels.math_functions import float_constant, select_max, select_min
from compiler.codegen.llvm.kernels.recurrent_activations import Activation, activations, activations_problem
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

FLOATS = ("float32", "float64")
LENGTHS = ("int32", "int64")
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
STATE_ARRAYS = {"RNN": 2, "GRU": 4, "LSTM": 3}  # hidden + next hidden; GRU z and reset terms; LSTM cell
SUMS_PER_LOOP = 8  # running sums of one dot-product loop (gate rows x entries), kept in vector registers
CHUNK_BYTES = 128 * 1024  # X·W^T of one chunk of steps
MAX_STACK_BYTES = 1 << 20  # stack arrays per thread; far above any real hidden size
SUMS = ("reassoc", "contract")  # dot products may be reordered (vectorized) and fused
X, W, R, B, LENS, H0, C0, P = range(8)


@dataclass(frozen=True)
class Recurrence:
    """The static facts of one node: sizes, layout, attributes and the work split."""

    op: str
    dtype: str
    seq: int
    batch: int
    inputs: int
    hidden: int
    direction: str
    layout: int
    clip: float | None
    linear_before_reset: bool
    input_forget: bool

    @property
    def gates(self) -> int:
        return GATES[self.op]

    @property
    def directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    @property
    def block(self) -> int:
        """Batch entries per work item: the largest divisor of the batch whose sums fit the
        registers and that leaves two work items or more (when there are two entries)."""
        limit = max(1, SUMS_PER_LOOP // self.gates)
        fits = [n for n in range(1, limit + 1)
                if self.batch % n == 0 and (n == 1 or self.batch // n * self.directions >= 2)]
        return max(fits)

    @property
    def chunk(self) -> int:
        """Steps whose X·W^T is computed together."""
        step_bytes = self.block * self.gates * self.hidden * np.dtype(self.dtype).itemsize
        return max(1, min(self.seq, CHUNK_BYTES // step_bytes))

    @property
    def work_items(self) -> int:
        return self.directions * self.batch // self.block

    @property
    def stack_bytes(self) -> int:
        block, hidden = self.block, self.hidden
        count = STATE_ARRAYS[self.op] * block * hidden + (self.chunk * block + 1) * self.gates * hidden
        return count * np.dtype(self.dtype).itemsize

    def reverse(self, direction: int) -> bool:
        return direction == 1 or self.direction == "reverse"

    def x_shape(self) -> tuple[int, ...]:
        return (self.batch, self.seq, self.inputs) if self.layout else (self.seq, self.batch, self.inputs)

    def y_shape(self) -> tuple[int, ...]:
        d, s, n, h = self.directions, self.seq, self.batch, self.hidden
        return (n, s, d, h) if self.layout else (s, d, n, h)

    def state_shape(self) -> tuple[int, ...]:
        return (self.batch, self.directions, self.hidden) if self.layout else (self.directions, self.batch, self.hidden)

    def x_strides(self) -> tuple[int, int]:
        """Elements between steps and between batch entries of X."""
        return (self.inputs, self.seq * self.inputs) if self.layout else (self.batch * self.inputs, self.inputs)

    def y_strides(self) -> tuple[int, int, int]:
        """Elements between steps, directions and batch entries of Y."""
        d, s, n, h = self.directions, self.seq, self.batch, self.hidden
        return (d * h, h, s * d * h) if self.layout else (d * n * h, n * h, h)

    def state_strides(self) -> tuple[int, int]:
        """Elements between directions and batch entries of initial_h/c and Y_h/Y_c."""
        d, n, h = self.directions, self.batch, self.hidden
        return (h, d * h) if self.layout else (n * h, h)

    def input_shapes(self) -> dict[int, tuple[int, ...]]:
        d, g, h = self.directions, self.gates, self.hidden
        return {X: self.x_shape(), W: (d, g * h, self.inputs), R: (d, g * h, h), B: (d, 2 * g * h),
                LENS: (self.batch,), H0: self.state_shape(), C0: self.state_shape(), P: (d, 3 * h)}


def _recurrence(graph: Graph, node: Node) -> Recurrence:
    types = graph.input_types(node)
    layout = int(node.attrs.get("layout", 0))
    x_shape = types[X].shape
    seq, batch = (x_shape[1], x_shape[0]) if layout else (x_shape[0], x_shape[1])
    clip = node.attrs.get("clip")
    return Recurrence(node.op_type, types[X].dtype, seq, batch, x_shape[2], types[R].shape[-1],
                      node.attrs.get("direction", "forward"), layout, None if clip is None else float(clip),
                      bool(node.attrs.get("linear_before_reset", 0)), bool(node.attrs.get("input_forget", 0)))


def _shape_problem(graph: Graph, node: Node, rec: Recurrence) -> str | None:
    types = graph.input_types(node)
    names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    for index, shape in rec.input_shapes().items():
        if index < len(types) and types[index] is not None and types[index].shape != shape:
            return f"{node.op_type} input {names[index]} has shape {types[index].shape}, expected {shape}"
    for name, value_type, shape in zip(("Y", "Y_h", "Y_c"), node.outputs, (rec.y_shape(),) + (rec.state_shape(),) * 2):
        if value_type.shape != shape:
            return f"{node.op_type} output {name} has shape {value_type.shape}, expected {shape} (check hidden_size)"
    return None


def _check(graph: Graph, node: Node) -> str | None:
    types = graph.input_types(node)
    if any(types[i] is None for i in (X, W, R)):
        return f"{node.op_type} needs its inputs X, W and R"
    if len(types[X].shape) != 3 or len(types[R].shape) != 3:
        return f"{node.op_type} needs 3-D X and R"
    rec = _recurrence(graph, node)
    floats = {t.dtype for i, t in enumerate(types) if t is not None and i != LENS}
    if floats != {rec.dtype} or rec.dtype not in FLOATS:
        return f"{node.op_type} on {', '.join(sorted(floats))} is not compiled by the cpu target (float32/float64 only)"
    if len(types) > LENS and types[LENS] is not None and types[LENS].dtype not in LENGTHS:
        return f"{node.op_type} sequence_lens must be int32 or int64, not {types[LENS].dtype}"
    if rec.direction not in ("forward", "reverse", "bidirectional"):
        return f"{node.op_type} direction {rec.direction!r} is not forward, reverse or bidirectional"
    if rec.layout not in (0, 1):
        return f"{node.op_type} layout {rec.layout} is not 0 or 1"
    if rec.clip is not None and not rec.clip > 0:
        return f"{node.op_type} clip {rec.clip} must be positive"
    problem = _shape_problem(graph, node, rec) or activations_problem(node, rec.directions)
    if problem:
        return problem
    if rec.stack_bytes > MAX_STACK_BYTES:
        return (f"{node.op_type} hidden_size {rec.hidden} needs {rec.stack_bytes} bytes of state per thread "
                f"(limit {MAX_STACK_BYTES})")
    return None


class Entry(NamedTuple):
    """One batch entry of a work item's block: its slot in the stack arrays and run-time values."""

    slot: int
    batch: ir.Value
    length: ir.Value
    state_base: ir.Value  # offset of its row in initial_h/c and Y_h/Y_c
    y_base: ir.Value  # offset of its step-0 row in Y


class _Emitter:
    def __init__(self, ctx: KernelContext):
        self.b, self.rec = ctx.builder, _recurrence(ctx.graph, ctx.node)
        rec, dtype = self.rec, self.rec.dtype
        padded = list(ctx.inputs) + [None] * (8 - len(ctx.inputs))
        self.ptrs = [None if arg is None else arg.ptr for arg in padded]
        self.lens_dtype = None if padded[LENS] is None else padded[LENS].dtype
        self.y, self.y_h, self.y_c = ([arg.ptr for arg in ctx.outputs] + [None] * 3)[:3]
        self.activations = activations(ctx.node, rec.directions)
        self.value_type = element_type(dtype)
        states = rec.block * rec.hidden
        self.h = stack_buffer(self.b, dtype, states)
        self.h_next = stack_buffer(self.b, dtype, states)
        self.cell = stack_buffer(self.b, dtype, states) if rec.op == "LSTM" else None
        self.z = stack_buffer(self.b, dtype, states) if rec.op == "GRU" else None
        self.reset = stack_buffer(self.b, dtype, states) if rec.op == "GRU" else None
        self.xw = stack_buffer(self.b, dtype, rec.chunk * rec.block * rec.gates * rec.hidden)
        self.acc = stack_buffer(self.b, dtype, rec.gates * rec.block)

    # ---- small helpers ----
    def _const(self, value: float) -> ir.Value:
        return float_constant(self.value_type, value)

    def _index(self, *terms) -> ir.Value:
        """The sum of i64 values and ints."""
        values = [const_i64(t) if isinstance(t, int) else t for t in terms]
        return reduce(self.b.add, values)

    def _load(self, ptr, *index) -> ir.Value:
        return load(self.b, ptr, self.rec.dtype, self._index(*index))

    def _store(self, value, ptr, *index) -> None:
        store(self.b, value, ptr, self.rec.dtype, self._index(*index))

    def _add(self, *values: ir.Value | None) -> ir.Value:
        return reduce(self.b.fadd, [v for v in values if v is not None])

    def _activate(self, activation: Activation, value: ir.Value) -> ir.Value:
        """activation(clip(value)): clip bounds every activation's input."""
        clip = self.rec.clip
        if clip is not None:
            value = select_max(self.b, value, self._const(-clip), "float")
            value = select_min(self.b, value, self._const(clip), "float")
        return activation(self.b, value)

    @contextmanager
    def _when(self, condition: ir.Value | None):
        """Emit the body under `condition` (always when None)."""
        if condition is None:
            yield
        else:
            with self.b.if_then(condition):
                yield

    def _bias(self, direction: int, gate: int, j: ir.Value, recurrent: bool) -> ir.Value | None:
        """Wb (or Rb) of `gate` for unit j; None without B."""
        if self.ptrs[B] is None:
            return None
        g, h = self.rec.gates, self.rec.hidden
        return self._load(self.ptrs[B], direction * 2 * g * h + (g * h if recurrent else 0) + gate * h, j)

    def _peephole(self, direction: int, gate: int, j: ir.Value, cell: ir.Value) -> ir.Value | None:
        """P (gates i, o, f) times the cell value; None without P."""
        if self.ptrs[P] is None:
            return None
        h = self.rec.hidden
        return self.b.fmul(self._load(self.ptrs[P], direction * 3 * h + gate * h, j), cell)

    def _valid(self, entry: Entry, step: ir.Value) -> ir.Value | None:
        """Whether `step` is inside the entry's sequence; None when every sequence is full."""
        return None if self.ptrs[LENS] is None else self.b.icmp_signed("<", step, entry.length)

    def _time(self, direction: int, entry: Entry, step: ir.Value) -> ir.Value:
        """The time index of `step`; past the end of a reverse sequence it stays at 0 (not stored)."""
        if not self.rec.reverse(direction):
            return step
        return smax(self.b, self.b.sub(self.b.sub(entry.length, const_i64(1)), step), const_i64(0))

    # ---- gate dot products ----
    def _dots(self, rows: list[tuple], vectors: list[tuple], n: int) -> list[list[ir.Value]]:
        """sums[r][v] = sum_k rows[r][k] * vectors[v][k], (pointer, offset) pairs, all in one loop over k."""
        b, pairs = self.b, [(r, v) for r in range(len(rows)) for v in range(len(vectors))]
        for slot in range(len(pairs)):
            self._store(self._const(0.0), self.acc, slot)
        with rolled_range(b, 0, n, name="k") as k:
            row_values = [self._load(ptr, base, k) for ptr, base in rows]
            vector_values = [self._load(ptr, base, k) for ptr, base in vectors]
            for slot, (r, v) in enumerate(pairs):
                product = b.fmul(row_values[r], vector_values[v], flags=SUMS)
                self._store(b.fadd(self._load(self.acc, slot), product, flags=SUMS), self.acc, slot)
        sums = [self._load(self.acc, slot) for slot in range(len(pairs))]
        return [sums[r * len(vectors):(r + 1) * len(vectors)] for r in range(len(rows))]

    def _weight_rows(self, matrix: int, direction: int, gates: list[int], j: ir.Value, width: int) -> list[tuple]:
        """(pointer, offset) of unit j's row of each gate in W or R."""
        rec = self.rec
        return [(self.ptrs[matrix], self.b.mul(self._index((direction * rec.gates + gate) * rec.hidden, j),
                                                const_i64(width)))
                for gate in gates]

    def _recurrent_sums(self, direction: int, gates: list[int], j: ir.Value, states) -> list[list[ir.Value]]:
        """sums[gate][slot]: unit j's R row of each gate times each entry's row of `states` (H or GRU r·H)."""
        hidden = self.rec.hidden
        vectors = [(states, const_i64(slot * hidden)) for slot in range(self.rec.block)]
        return self._dots(self._weight_rows(R, direction, gates, j, hidden), vectors, hidden)

    def _input_products(self, direction: int, entries: list[Entry], first: ir.Value, steps: ir.Value) -> None:
        """xw[step - first, entry, gate, unit] = X_t·W^T for the chunk; a unit's W rows stay in cache over it."""
        b, rec = self.b, self.rec
        x_step, x_batch = rec.x_strides()
        gates = list(range(rec.gates))
        with rolled_range(b, 0, rec.hidden, name="xj") as j:
            rows = self._weight_rows(W, direction, gates, j, rec.inputs)
            with rolled_range(b, 0, steps, name="xs") as offset:
                step = b.add(first, offset)
                vectors = [(self.ptrs[X], self._index(b.mul(self._time(direction, entry, step), const_i64(x_step)),
                                                      b.mul(entry.batch, const_i64(x_batch))))
                           for entry in entries]
                sums = self._dots(rows, vectors, rec.inputs)
                for gate in gates:
                    for entry in entries:
                        self._store(sums[gate][entry.slot], self.xw, self._xw_index(offset, entry, gate), j)

    def _xw_index(self, offset: ir.Value, entry: Entry, gate: int) -> ir.Value:
        rec = self.rec
        row = self.b.mul(offset, const_i64(rec.block * rec.gates * rec.hidden))
        return self._index(row, (entry.slot * rec.gates + gate) * rec.hidden)

    def _pre_activations(self, direction: int, entry: Entry, j: ir.Value, offset: ir.Value, sums) -> list[ir.Value]:
        """X_t·W^T + H·R^T + Wb + Rb of unit j and one entry, for gates 0, 1, ... as many as `sums` holds."""
        return [self._add(self._load(self.xw, self._xw_index(offset, entry, gate), j), gate_sums[entry.slot],
                          self._bias(direction, gate, j, False), self._bias(direction, gate, j, True))
                for gate, gate_sums in enumerate(sums)]

    # ---- one step per op: reads self.h (and the cell), writes self.h_next ----
    def _rnn_step(self, direction: int, entries: list[Entry], offset, valid) -> None:
        (f,) = self.activations[direction]
        rec = self.rec
        with rolled_range(self.b, 0, rec.hidden, name="j") as j:
            sums = self._recurrent_sums(direction, [0], j, self.h)
            for entry in entries:
                (pre,) = self._pre_activations(direction, entry, j, offset, sums)
                self._store(self._activate(f, pre), self.h_next, entry.slot * rec.hidden, j)

    def _lstm_step(self, direction: int, entries: list[Entry], offset, valid) -> None:
        """Gates i, o, f, c; peepholes P = (i, o, f); input_forget couples f to 1 - i."""
        b, rec, (f, g, h) = self.b, self.rec, self.activations[direction]
        with rolled_range(b, 0, rec.hidden, name="j") as j:
            sums = self._recurrent_sums(direction, [0, 1, 2, 3], j, self.h)
            for entry in entries:
                pre_i, pre_o, pre_f, pre_c = self._pre_activations(direction, entry, j, offset, sums)
                state = entry.slot * rec.hidden
                cell = self._load(self.cell, state, j)
                input_gate = self._activate(f, self._add(pre_i, self._peephole(direction, 0, j, cell)))
                if rec.input_forget:
                    forget_gate = b.fsub(self._const(1.0), input_gate)
                else:
                    forget_gate = self._activate(f, self._add(pre_f, self._peephole(direction, 2, j, cell)))
                new_cell = b.fadd(b.fmul(forget_gate, cell), b.fmul(input_gate, self._activate(g, pre_c)))
                kept = new_cell if valid[entry.slot] is None else b.select(valid[entry.slot], new_cell, cell)
                self._store(kept, self.cell, state, j)
                output_gate = self._activate(f, self._add(pre_o, self._peephole(direction, 1, j, new_cell)))
                self._store(b.fmul(output_gate, h(b, new_cell)), self.h_next, state, j)

    def _gru_step(self, direction: int, entries: list[Entry], offset, valid) -> None:
        """Gates z, r, h. The candidate needs r for every unit first (it multiplies H before R_h, or
        R_h·H after with linear_before_reset), so z and the reset term are kept for a second pass."""
        b, rec, (f, g) = self.b, self.rec, self.activations[direction]
        with rolled_range(b, 0, rec.hidden, name="j") as j:
            sums = self._recurrent_sums(direction, [0, 1], j, self.h)
            for entry in entries:
                state = entry.slot * rec.hidden
                pre_z, pre_r = self._pre_activations(direction, entry, j, offset, sums)
                self._store(self._activate(f, pre_z), self.z, state, j)
                reset = self._activate(f, pre_r)
                if not rec.linear_before_reset:
                    reset = b.fmul(reset, self._load(self.h, state, j))
                self._store(reset, self.reset, state, j)
        with rolled_range(b, 0, rec.hidden, name="j") as j:
            (sums,) = self._recurrent_sums(direction, [2], j, self.h if rec.linear_before_reset else self.reset)
            for entry in entries:
                state = entry.slot * rec.hidden
                h_part = self._add(sums[entry.slot], self._bias(direction, 2, j, True))
                if rec.linear_before_reset:
                    h_part = b.fmul(self._load(self.reset, state, j), h_part)
                x_part = self._add(self._load(self.xw, self._xw_index(offset, entry, 2), j),
                                   self._bias(direction, 2, j, False))
                candidate = self._activate(g, b.fadd(x_part, h_part))
                z = self._load(self.z, state, j)
                keep = b.fmul(z, self._load(self.h, state, j))
                self._store(b.fadd(b.fmul(b.fsub(self._const(1.0), z), candidate), keep), self.h_next, state, j)

    # ---- the sequences of one work item ----
    def _entry(self, direction: int, slot: int, batch: ir.Value) -> Entry:
        b, rec = self.b, self.rec
        if self.ptrs[LENS] is None:
            length = const_i64(rec.seq)
        else:
            value = convert(b, load(b, self.ptrs[LENS], self.lens_dtype, batch), self.lens_dtype, "int64")
            length = smin(b, smax(b, value, const_i64(0)), const_i64(rec.seq))
        state_direction, state_batch = rec.state_strides()
        _, y_direction, y_batch = rec.y_strides()
        state_base = self._index(direction * state_direction, b.mul(batch, const_i64(state_batch)))
        y_base = self._index(direction * y_direction, b.mul(batch, const_i64(y_batch)))
        return Entry(slot, batch, length, state_base, y_base)

    def _load_state(self, entries: list[Entry]) -> None:
        for initial, buffer in ((self.ptrs[H0], self.h), (self.ptrs[C0], self.cell)):
            if buffer is None:
                continue
            for entry in entries:
                with rolled_range(self.b, 0, self.rec.hidden, name="init") as k:
                    value = self._const(0.0) if initial is None else self._load(initial, entry.state_base, k)
                    self._store(value, buffer, entry.slot * self.rec.hidden, k)

    def _advance(self, direction: int, entries: list[Entry], step: ir.Value, valid) -> None:
        """The next hidden state becomes the state and step's row of Y, for entries still running."""
        b, rec = self.b, self.rec
        y_step = rec.y_strides()[0]
        for entry in entries:
            with self._when(valid[entry.slot]):
                y_row = b.add(entry.y_base, b.mul(self._time(direction, entry, step), const_i64(y_step)))
                state = entry.slot * rec.hidden
                with rolled_range(b, 0, rec.hidden, name="copy") as k:
                    value = self._load(self.h_next, state, k)
                    self._store(value, self.h, state, k)
                    if self.y is not None:
                        self._store(value, self.y, y_row, k)

    def _finish(self, entries: list[Entry]) -> None:
        """Zero Y past each sequence; Y_h/Y_c get the last state, zeros for an empty sequence."""
        b, rec = self.b, self.rec
        y_step = rec.y_strides()[0]
        for entry in entries:
            if self.y is not None:
                with rolled_range(b, entry.length, rec.seq, name="pad") as t:
                    y_row = b.add(entry.y_base, b.mul(t, const_i64(y_step)))
                    with rolled_range(b, 0, rec.hidden, name="zero") as k:
                        self._store(self._const(0.0), self.y, y_row, k)
            empty = b.icmp_signed("==", entry.length, const_i64(0))
            for output, buffer in ((self.y_h, self.h), (self.y_c, self.cell)):
                if output is None or buffer is None:
                    continue
                with rolled_range(b, 0, rec.hidden, name="final") as k:
                    value = b.select(empty, self._const(0.0), self._load(buffer, entry.slot * rec.hidden, k))
                    self._store(value, output, entry.state_base, k)

    def _sequences(self, direction: int, block: ir.Value) -> None:
        b, rec = self.b, self.rec
        first_batch = b.mul(block, const_i64(rec.block))
        entries = [self._entry(direction, slot, self._index(first_batch, slot)) for slot in range(rec.block)]
        longest = reduce(lambda x, y: smax(b, x, y), [entry.length for entry in entries])
        self._load_state(entries)
        step_body = {"RNN": self._rnn_step, "GRU": self._gru_step, "LSTM": self._lstm_step}[rec.op]
        with rolled_range(b, 0, longest, rec.chunk, name="chunk") as first:
            steps = smin(b, const_i64(rec.chunk), b.sub(longest, first))
            self._input_products(direction, entries, first, steps)
            with rolled_range(b, 0, steps, name="s") as offset:
                step = b.add(first, offset)
                valid = [self._valid(entry, step) for entry in entries]
                step_body(direction, entries, offset, valid)
                self._advance(direction, entries, step, valid)
        self._finish(entries)

    def run(self, begin: ir.Value, end: ir.Value) -> None:
        """Items [0, blocks) run direction 0, [blocks, 2 * blocks) direction 1."""
        b, blocks = self.b, const_i64(self.rec.batch // self.rec.block)
        with rolled_range(b, begin, end, name="item") as item:
            if self.rec.directions == 1:
                self._sequences(0, item)
            else:
                with b.if_else(b.icmp_signed("<", item, blocks)) as (forward, backward):
                    with forward:
                        self._sequences(0, item)
                    with backward:
                        self._sequences(1, b.sub(item, blocks))


def _emit(ctx: KernelContext) -> None:
    _Emitter(ctx).run(ctx.begin, ctx.end)


register_kernel(KernelSpec(tuple(GATES), _check, lambda graph, node: _recurrence(graph, node).work_items, _emit))
