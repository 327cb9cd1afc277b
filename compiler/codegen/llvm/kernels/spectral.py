"""DFT (opsets 17 and 20) and STFT: one mixed-radix FFT per signal line.

A work item is one line (DFT: all positions but the transformed axis; STFT: one frame of one
signal). It loads the line as complex float64 into a stack buffer (zero-padded or truncated
to the DFT length; for an inverse one-sided DFT the Hermitian-symmetric other half is filled
in), runs a Stockham autosort FFT ping-ponging between two stack buffers, and writes the bins
the output keeps. The length is factored into radices 4, 2, 3, 5 then any other primes; a
stage of radix R computes, for each j < n/R (k = j mod ns, L = ns * R),
    out[(j - k) * R + k + q * ns] = sum_r in[j + r * n/R] * W_n^(r * (k + q * ns) * n/L)
so it costs n * R complex multiply-adds: n * sum(radices) in all, O(n log n) for smooth
lengths and the direct O(n^2) DFT for a prime length. Twiddles W_n^t come from one constant
table per kernel. Arithmetic is float64 whatever the input dtype.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F64, const_i64, convert, for_range, load, store
from compiler.codegen.llvm.kernels.linear_algebra import linear, stack_buffer, unravel
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

FLOATS = ("float16", "float32", "float64")
MAX_LENGTH = 1 << 14  # two stack buffers of this many complex float64 values (512 KiB)

Complex = tuple[ir.Value, ir.Value]


def radices(n: int) -> list[int]:
    """Factors of n, radix 4 first; their order is the order of the FFT's stages."""
    factors = []
    for radix in (4, 2, 3, 5):
        while n % radix == 0:
            factors.append(radix)
            n //= radix
    prime = 7
    while n > 1:
        while n % prime == 0:
            factors.append(prime)
            n //= prime
        prime += 2
    return factors


def _twiddle_table(module: ir.Module, n: int, sign: int) -> ir.GlobalVariable:
    """W_n^t = exp(sign * 2 pi i t / n) for t < n as (re, im) pairs, in an internal constant array."""
    angles = sign * 2 * np.pi * np.arange(n) / n
    values = np.stack([np.cos(angles), np.sin(angles)], axis=1).ravel()
    table_type = ir.ArrayType(F64, 2 * n)
    table = ir.GlobalVariable(module, table_type, name=module.get_unique_name("kiln.dft.twiddles"))
    table.global_constant, table.linkage = True, "internal"
    table.initializer = ir.Constant(table_type, [float(v) for v in values])
    return table


class LineFFT:
    """The FFT of one line of length n; create it before the item loop (its buffers are allocas)."""

    def __init__(self, b: ir.IRBuilder, n: int, inverse: bool):
        self.b, self.n = b, n
        self.buffers = [stack_buffer(b, "float64", 2 * n) for _ in range(2)]
        self.sums = [b.alloca(F64) for _ in range(2)]  # entry-block allocas become registers
        self.table = _twiddle_table(b.module, n, 1 if inverse else -1)

    def run(self, read: Callable[[ir.Value], Complex]) -> Callable[[ir.Value], Complex]:
        """Transform the line whose element t < n is read(t); returns bin k -> its value."""
        b, n = self.b, self.n
        with for_range(b, 0, n, name="load") as t:
            self._put(self.buffers[0], t, read(t))
        current, span = 0, 1
        for radix in radices(n):
            self._stage(self.buffers[current], self.buffers[1 - current], radix, span)
            current, span = 1 - current, span * radix
        return lambda k: self._get(self.buffers[current], k)

    def _put(self, target: ir.Value, index: ir.Value, value: Complex) -> None:
        position = self.b.mul(index, const_i64(2))
        for part in range(2):
            store(self.b, value[part], target, "float64", self.b.add(position, const_i64(part)))

    def _get(self, source: ir.Value, index: ir.Value) -> Complex:
        position = self.b.mul(index, const_i64(2))
        return tuple(load(self.b, source, "float64", self.b.add(position, const_i64(part))) for part in range(2))

    def _twiddle(self, index: ir.Value) -> Complex:
        b = self.b
        return tuple(b.load(b.gep(self.table, [const_i64(0), b.add(b.mul(index, const_i64(2)), const_i64(part))],
                                  inbounds=True), typ=F64) for part in range(2))

    def _stage(self, source: ir.Value, target: ir.Value, radix: int, span: int) -> None:
        b, n = self.b, self.n
        stride, scale = n // radix, n // (span * radix)
        with for_range(b, 0, stride, name="j") as j:
            k = b.urem(j, const_i64(span))
            first = b.add(b.mul(b.sub(j, k), const_i64(radix)), k)
            with for_range(b, 0, radix, name="q") as q:
                step = b.mul(b.add(k, b.mul(q, const_i64(span))), const_i64(scale))  # < n
                for total in self.sums:
                    b.store(ir.Constant(F64, 0.0), total)
                with for_range(b, 0, radix, name="r") as r:
                    x_re, x_im = self._get(source, b.add(j, b.mul(r, const_i64(stride))))
                    w_re, w_im = self._twiddle(b.urem(b.mul(r, step), const_i64(n)))
                    re, im = (b.load(total, typ=F64) for total in self.sums)
                    b.store(b.fadd(re, b.fsub(b.fmul(x_re, w_re), b.fmul(x_im, w_im))), self.sums[0])
                    b.store(b.fadd(im, b.fadd(b.fmul(x_re, w_im), b.fmul(x_im, w_re))), self.sums[1])
                sums = [b.load(total, typ=F64) for total in self.sums]
                self._put(target, b.add(first, b.mul(q, const_i64(span))), sums)


# ---- DFT ----

def _dft_axis(graph: Graph, node: Node) -> int | None:
    rank = len(graph.input_types(node)[0].shape)
    if node.version is not None and node.version < 20:
        return node.attrs.get("axis", 1) % rank
    values = graph.input_values(node)
    if len(values) < 3 or values[2] is None:
        return rank - 2
    axis = graph.constant_value(values[2])
    return None if axis is None else int(np.asarray(axis).reshape(-1)[0]) % rank


def _dft_length(graph: Graph, node: Node) -> int:
    """The DFT size n; the default follows onnx.reference (2 * (m - 1) for an inverse one-sided DFT)."""
    values = graph.input_values(node)
    given = graph.constant_value(values[1]) if len(values) > 1 and values[1] is not None else None
    if given is not None:
        return int(np.asarray(given).reshape(-1)[0])
    size = graph.input_types(node)[0].shape[_dft_axis(graph, node)]
    return 2 * (size - 1) if node.attrs.get("inverse", 0) and node.attrs.get("onesided", 0) else size


def _check_dft(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    if x.dtype not in FLOATS:
        return f"DFT on {x.dtype} is not compiled by the cpu target (float16/32/64 only)"
    if len(x.shape) < 2 or x.shape[-1] not in (1, 2):
        return f"DFT needs a last dim of 1 (real) or 2 (complex), got shape {list(x.shape)}"
    values = graph.input_values(node)
    for index, name in ((1, "dft_length"), (2, "axis")):
        if index < len(values) and values[index] is not None and graph.constant_value(values[index]) is None:
            return f"DFT with {name} computed at run time is not compiled by the cpu target (it needs a constant)"
    axis = _dft_axis(graph, node)
    if axis == len(x.shape) - 1:
        return "DFT axis is the last (real/imaginary) dim; it must be a signal dim"
    return _length_problem("DFT", _dft_length(graph, node))


def _length_problem(op: str, n: int) -> str | None:
    if not 1 <= n <= MAX_LENGTH:
        return f"{op} of length {n} is not compiled by the cpu target (1 to {MAX_LENGTH})"
    return None


def _dft_lines(graph: Graph, node: Node) -> int:
    shape = graph.input_types(node)[0].shape
    return math.prod(shape[:-1]) // shape[_dft_axis(graph, node)]


def _emit_dft(ctx: KernelContext) -> None:
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    axis, n = _dft_axis(ctx.graph, ctx.node), _dft_length(ctx.graph, ctx.node)
    inverse, onesided = bool(ctx.node.attrs.get("inverse", 0)), bool(ctx.node.attrs.get("onesided", 0))
    fft = LineFFT(b, n, inverse)
    others = [d for d in range(len(x.shape) - 1) if d != axis]
    x_strides, y_strides = x.strides, y.strides
    zero, size = ir.Constant(F64, 0.0), x.shape[axis]
    with for_range(b, ctx.begin, ctx.end, name="line") as line:
        coords = unravel(b, line, [x.shape[d] for d in others])
        x_base = linear(b, coords, [x_strides[d] for d in others])
        y_base = linear(b, coords, [y_strides[d] for d in others])

        def read(t: ir.Value) -> Complex:
            mirrored = onesided and inverse  # bins past n/2 are the conjugates of the bins below
            upper = b.icmp_signed(">", t, const_i64(n // 2)) if mirrored else None
            k = b.select(upper, b.sub(const_i64(n), t), t) if mirrored else t
            inside = b.icmp_signed("<", k, const_i64(size))
            index = linear(b, [b.select(inside, k, const_i64(0))], [x_strides[axis]], x_base)
            parts = [convert(b, load(b, x.ptr, x.dtype, b.add(index, const_i64(p))), x.dtype, "float64")
                     for p in range(x.shape[-1])]
            re, im = parts[0], parts[1] if len(parts) > 1 else zero
            if mirrored:
                im = b.select(upper, b.fneg(im), im)
            return b.select(inside, re, zero), b.select(inside, im, zero)

        result = fft.run(read)
        with for_range(b, 0, y.shape[axis], name="bin") as k:
            index = linear(b, [k], [y_strides[axis]], y_base)
            for part, value in enumerate(result(k)[:y.shape[-1]]):
                value = b.fdiv(value, ir.Constant(F64, float(n))) if inverse else value
                store(b, convert(b, value, "float64", y.dtype), y.ptr, y.dtype, b.add(index, const_i64(part)))


register_kernel(KernelSpec(("DFT",), _check_dft, _dft_lines, _emit_dft))


# ---- STFT ----

def _stft_settings(graph: Graph, node: Node) -> tuple[int | None, int]:
    """(frame step, frame length) when the step is a constant."""
    values = graph.input_values(node)
    step = graph.constant_value(values[1])
    shape = graph.input_types(node)[0].shape
    window = graph.input_types(node)[2] if len(values) > 2 and values[2] is not None else None
    length = graph.constant_value(values[3]) if len(values) > 3 and values[3] is not None else None
    if length is not None:
        length = int(np.asarray(length).reshape(-1)[0])
    elif window is not None:
        length = window.shape[0]
    else:
        length = shape[-2]
    return (None if step is None else int(np.asarray(step).reshape(-1)[0])), length


def _check_stft(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    if x.dtype not in FLOATS:
        return f"STFT on {x.dtype} is not compiled by the cpu target (float16/32/64 only)"
    if len(x.shape) != 3 or x.shape[-1] not in (1, 2):
        return f"STFT needs a signal of shape [batch, length, 1 or 2], got {list(x.shape)}"
    values = graph.input_values(node)
    if len(values) > 3 and values[3] is not None and graph.constant_value(values[3]) is None:
        return "STFT with frame_length computed at run time is not compiled by the cpu target (it needs a constant)"
    step, length = _stft_settings(graph, node)
    if step is None:
        return "STFT with frame_step computed at run time is not compiled by the cpu target (it needs a constant)"
    if step < 1 or length > x.shape[1]:
        return f"STFT frame_step {step} and frame_length {length} do not fit a signal of length {x.shape[1]}"
    return _length_problem("STFT", length)


def _emit_stft(ctx: KernelContext) -> None:
    b, x, y = ctx.builder, ctx.inputs[0], ctx.outputs[0]
    window = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    step, n = _stft_settings(ctx.graph, ctx.node)
    fft = LineFFT(b, n, inverse=False)
    zero = ir.Constant(F64, 0.0)
    with for_range(b, ctx.begin, ctx.end, name="frame") as item:
        signal, frame = unravel(b, item, y.shape[:2])
        x_base = linear(b, [signal, b.mul(frame, const_i64(step))], x.strides[:2])

        def read(t: ir.Value) -> Complex:
            index = linear(b, [t], [x.shape[-1]], x_base)
            parts = [load(b, x.ptr, x.dtype, b.add(index, const_i64(p))) for p in range(x.shape[-1])]
            if window is not None:  # weighted in the signal's dtype, as onnx.reference does
                weight = load(b, window.ptr, window.dtype, t)
                parts = [b.fmul(part, weight) for part in parts]
            parts = [convert(b, part, x.dtype, "float64") for part in parts]
            return parts[0], parts[1] if len(parts) > 1 else zero

        result = fft.run(read)
        with for_range(b, 0, y.shape[2], name="bin") as k:
            index = linear(b, [signal, frame, k], y.strides[:3])
            for part, value in enumerate(result(k)):
                store(b, convert(b, value, "float64", y.dtype), y.ptr, y.dtype, b.add(index, const_i64(part)))


register_kernel(KernelSpec(("STFT",), _check_stft, lambda graph, node: math.prod(node.outputs[0].shape[:2]),
                           _emit_stft))
