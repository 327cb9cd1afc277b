"""Momentum (standard and Nesterov), Adagrad and Adam of ai.onnx.preview.training.

A node updates n tensors at once: inputs are R (learning rate), T (update count), then n
tensors of each operand (X..., G..., V..., [H...]), outputs the n tensors of each new state.
Every element updates independently, so the work items are the elements of all n tensors
laid end to end; each tensor's share of [begin, end) is one contiguous loop. The scalars that
depend on R and T (the decayed or bias-corrected rate) are worked out once per call, in double.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F64, const_i64, convert, for_range, load, store
from compiler.codegen.llvm.kernels.math_functions import float_constant, intrinsic
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

DOMAIN = "ai.onnx.preview.training"
FLOATS = ("float32", "float64")


def _float32(value: float) -> float:
    """An attribute default as ONNX stores it (a float32)."""
    return float(np.float32(value))


@dataclass(frozen=True)
class Rule:
    """An optimizer: how many operands per tensor (X, G, states...), its attribute defaults, and
    `update(b, scalars, values, attrs)` -> new (X, states...) of one element."""

    operands: int
    defaults: dict
    prepare: Callable[[ir.IRBuilder, ir.Value, ir.Value, dict], dict]  # (b, r, t as double, attrs) -> scalars
    update: Callable[[ir.IRBuilder, dict, list, dict], list]


def _constant(like: ir.Value, value: float) -> ir.Constant:
    return float_constant(like.type, value)


def _regularized(b: ir.IRBuilder, x: ir.Value, g: ir.Value, attrs: dict) -> ir.Value:
    """g + norm_coefficient * x: the gradient of the loss plus the L2 penalty's."""
    return b.fadd(b.fmul(_constant(x, attrs["norm_coefficient"]), x), g)


def _momentum_scalars(b: ir.IRBuilder, r: ir.Value, t: ir.Value, attrs: dict) -> dict:
    """The gradient's coefficient is 1 on the first update (T == 0), beta afterwards."""
    first = b.fcmp_ordered("<=", t, float_constant(F64, 0.0))
    return {"rate": r, "beta": b.select(first, float_constant(F64, 1.0), float_constant(F64, attrs["beta"]))}


def _momentum(b: ir.IRBuilder, scalars: dict, values: list, attrs: dict) -> list:
    x, g, v = values
    g = _regularized(b, x, g, attrs)
    alpha = _constant(x, attrs["alpha"])
    v_new = b.fadd(b.fmul(alpha, v), b.fmul(scalars["beta"], g))
    step = b.fadd(g, b.fmul(alpha, v_new)) if attrs["mode"] == "nesterov" else v_new
    return [b.fsub(x, b.fmul(scalars["rate"], step)), v_new]


def _adagrad_scalars(b: ir.IRBuilder, r: ir.Value, t: ir.Value, attrs: dict) -> dict:
    """r / (1 + T * decay_factor)."""
    decay = b.fadd(float_constant(F64, 1.0), b.fmul(t, float_constant(F64, attrs["decay_factor"])))
    return {"rate": b.fdiv(r, decay)}


def _adagrad(b: ir.IRBuilder, scalars: dict, values: list, attrs: dict) -> list:
    x, g, h = values
    g = _regularized(b, x, g, attrs)
    h_new = b.fadd(h, b.fmul(g, g))
    root = b.fadd(intrinsic(b, "sqrt", h_new), _constant(x, attrs["epsilon"]))
    return [b.fsub(x, b.fdiv(b.fmul(scalars["rate"], g), root)), h_new]


def _adam_scalars(b: ir.IRBuilder, r: ir.Value, t: ir.Value, attrs: dict) -> dict:
    """r * sqrt(1 - beta^T) / (1 - alpha^T) once T > 0 (bias correction of both moments), else r."""
    one = float_constant(F64, 1.0)
    beta_power = intrinsic(b, "pow", float_constant(F64, attrs["beta"]), t)
    alpha_power = intrinsic(b, "pow", float_constant(F64, attrs["alpha"]), t)
    corrected = b.fdiv(b.fmul(r, intrinsic(b, "sqrt", b.fsub(one, beta_power))), b.fsub(one, alpha_power))
    return {"rate": b.select(b.fcmp_ordered(">", t, float_constant(F64, 0.0)), corrected, r)}


def _adam(b: ir.IRBuilder, scalars: dict, values: list, attrs: dict) -> list:
    x, g, v, h = values
    g = _regularized(b, x, g, attrs)
    alpha, beta = attrs["alpha"], attrs["beta"]
    v_new = b.fadd(b.fmul(_constant(x, alpha), v), b.fmul(_constant(x, 1 - alpha), g))
    h_new = b.fadd(b.fmul(_constant(x, beta), h), b.fmul(_constant(x, 1 - beta), b.fmul(g, g)))
    root = b.fadd(intrinsic(b, "sqrt", h_new), _constant(x, attrs["epsilon"]))
    x_new = b.fsub(x, b.fmul(scalars["rate"], b.fdiv(v_new, root)))
    return [b.fmul(_constant(x, 1 - attrs["norm_coefficient_post"]), x_new), v_new, h_new]


RULES = {
    "Momentum": Rule(3, {}, _momentum_scalars, _momentum),
    "Adagrad": Rule(3, {"decay_factor": 0.0, "epsilon": _float32(1e-6), "norm_coefficient": 0.0},
                    _adagrad_scalars, _adagrad),
    "Adam": Rule(4, {"alpha": _float32(0.9), "beta": _float32(0.999), "epsilon": _float32(1e-6),
                     "norm_coefficient": 0.0, "norm_coefficient_post": 0.0}, _adam_scalars, _adam),
}
REQUIRED = {"Momentum": ("alpha", "beta", "mode", "norm_coefficient")}


def _attributes(node: Node) -> dict:
    return {**RULES[node.op_type].defaults, **node.attrs}


def _tensor_count(graph: Graph, node: Node) -> int:
    return (len(graph.input_types(node)) - 2) // RULES[node.op_type].operands


def _check(graph: Graph, node: Node) -> str | None:
    rule, op = RULES[node.op_type], node.op_type
    types = graph.input_types(node)
    count = _tensor_count(graph, node)
    if count < 1 or len(types) != 2 + rule.operands * count or len(node.outputs) != (rule.operands - 1) * count:
        return (f"{op} needs R, T and {rule.operands} inputs per updated tensor, with {rule.operands - 1} outputs "
                f"per tensor (it has {len(types)} inputs and {len(node.outputs)} outputs)")
    if any(t is None for t in types):
        return f"{op} with an omitted input is not compiled by the cpu target"
    missing = [name for name in REQUIRED.get(op, ()) if name not in node.attrs]
    if missing:
        return f"{op} needs the attributes {', '.join(missing)}"
    if op == "Momentum" and node.attrs["mode"] not in ("standard", "nesterov"):
        return f"Momentum mode {node.attrs['mode']!r} is not 'standard' or 'nesterov'"
    rate, step = types[:2]
    if rate.dtype not in FLOATS or step.dtype != "int64" or math.prod(rate.shape) != 1 or math.prod(step.shape) != 1:
        return f"{op} needs a float32/float64 scalar R and an int64 scalar T (got {rate} and {step})"
    tensors = types[2:] + list(node.outputs)
    if any(t.dtype not in FLOATS or t.dtype != tensors[0].dtype for t in tensors):
        return f"{op} on {', '.join(sorted({t.dtype for t in tensors}))} is not compiled by the cpu target " \
               "(it needs one of float32/float64 for every tensor)"
    for index in range(count):
        shapes = {tensors[index + k * count].shape for k in range(rule.operands)}
        if len(shapes) > 1:
            return f"{op} tensor {index} has operands of different shapes {sorted(shapes)}"
    return None


def _sizes(graph: Graph, node: Node) -> list[int]:
    count = _tensor_count(graph, node)
    return [math.prod(t.shape) for t in graph.input_types(node)[2:2 + count]]


def _emit(ctx: KernelContext) -> None:
    """Tensor k owns items [start_k, start_k + size_k); the loop over it runs on the part inside [begin, end)."""
    b, node = ctx.builder, ctx.node
    rule, attrs = RULES[node.op_type], _attributes(node)
    rate, step = ctx.inputs[:2]
    count = _tensor_count(ctx.graph, node)
    dtype = ctx.inputs[2].dtype
    r64 = convert(b, load(b, rate.ptr, rate.dtype, const_i64(0)), rate.dtype, "float64")
    t64 = b.sitofp(load(b, step.ptr, step.dtype, const_i64(0)), F64)
    scalars = {name: convert(b, value, "float64", dtype) for name, value in rule.prepare(b, r64, t64, attrs).items()}
    start = 0
    for index, size in enumerate(_sizes(ctx.graph, node)):
        low = b.sub(_clamp(b, ctx.begin, start, start + size), const_i64(start))
        high = b.sub(_clamp(b, ctx.end, start, start + size), const_i64(start))
        operands = [ctx.inputs[2 + index + k * count] for k in range(rule.operands)]
        results = [ctx.outputs[index + k * count] for k in range(rule.operands - 1)]
        with for_range(b, low, high, name=f"element{index}") as i:
            values = [load(b, operand.ptr, dtype, i) for operand in operands]
            for result, value in zip(results, rule.update(b, scalars, values, attrs)):
                store(b, value, result.ptr, dtype, i)
        start += size


def _clamp(b: ir.IRBuilder, value: ir.Value, low: int, high: int) -> ir.Value:
    value = b.select(b.icmp_signed("<", value, const_i64(low)), const_i64(low), value)
    return b.select(b.icmp_signed(">", value, const_i64(high)), const_i64(high), value)


register_kernel(KernelSpec(tuple(f"{DOMAIN}::{op}" for op in RULES), _check,
                           lambda graph, node: sum(_sizes(graph, node)), _emit))
