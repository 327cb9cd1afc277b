"""The activation functions RNN, GRU and LSTM accept, with their alpha/beta attribute lists.

Names match case-insensitively, as in ONNX Runtime. The `activation_alpha`/`activation_beta`
lists are consumed in the order of the activations, each function taking only the values it
uses (ONNX Runtime does the same); a function whose value is missing from a list gets the
default of the ONNX op of the same name. Functions that are ONNX ops reuse the elementwise
kernels' bodies, so both compute the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from llvmlite import ir

from compiler.codegen.llvm.kernels.elementwise import OPS
from compiler.codegen.llvm.kernels.math_functions import float_constant
from compiler.codegen.llvm.kernels.vector_math import tanh
from compiler.ir.graph import Node


class _Attributes(NamedTuple):
    """What an elementwise body reads from its node: the attributes."""

    attrs: dict


@dataclass(frozen=True)
class ActivationKind:
    """One function: the elementwise op computing it (or its own body) and its alpha/beta defaults."""

    name: str
    op: str | None = None
    alpha: float | None = None  # None: the function takes no alpha
    beta: float | None = None
    body: Callable[[ir.IRBuilder, ir.Value, float, float], ir.Value] | None = None


def _thresholded_relu(b: ir.IRBuilder, x: ir.Value, alpha: float, beta: float) -> ir.Value:
    return b.select(b.fcmp_ordered(">", x, float_constant(x.type, alpha)), x, float_constant(x.type, 0))


def _affine(b: ir.IRBuilder, x: ir.Value, alpha: float, beta: float) -> ir.Value:
    return b.fadd(b.fmul(x, float_constant(x.type, alpha)), float_constant(x.type, beta))


def _scaled_tanh(b: ir.IRBuilder, x: ir.Value, alpha: float, beta: float) -> ir.Value:
    return b.fmul(float_constant(x.type, alpha), tanh(b, b.fmul(x, float_constant(x.type, beta))))


KINDS = {kind.name.lower(): kind for kind in (
    ActivationKind("Relu", "Relu"),
    ActivationKind("Tanh", "Tanh"),
    ActivationKind("Sigmoid", "Sigmoid"),
    ActivationKind("LeakyRelu", "LeakyRelu", alpha=0.01),
    ActivationKind("Elu", "Elu", alpha=1.0),
    ActivationKind("HardSigmoid", "HardSigmoid", alpha=0.2, beta=0.5),
    ActivationKind("Softsign", "Softsign"),
    ActivationKind("Softplus", "Softplus"),
    ActivationKind("ThresholdedRelu", alpha=1.0, body=_thresholded_relu),
    ActivationKind("Affine", alpha=1.0, beta=0.0, body=_affine),
    ActivationKind("ScaledTanh", alpha=1.0, beta=1.0, body=_scaled_tanh),
)}

# Per direction, in the order the op's equations name them: RNN f; GRU f, g; LSTM f, g, h.
DEFAULTS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}


@dataclass(frozen=True)
class Activation:
    """One activation with its alpha and beta settled."""

    kind: ActivationKind
    alpha: float
    beta: float

    def __call__(self, builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
        if self.kind.body is not None:
            return self.kind.body(builder, x, self.alpha, self.beta)
        attributes = _Attributes({"alpha": self.alpha, "beta": self.beta})
        return OPS[self.kind.op].body(builder, [x], attributes, "float", [])


def activation_names(node: Node, directions: int) -> list[str]:
    """The node's activation names for all directions (forward's, then reverse's)."""
    names = node.attrs.get("activations")
    if not names:
        return list(DEFAULTS[node.op_type]) * directions
    if node.op_type == "RNN" and directions == 1 and len(names) == 2:
        return list(names[:1])  # the schema's default ["Tanh", "Tanh"] written out for one direction
    return list(names)


def activations_problem(node: Node, directions: int) -> str | None:
    names = activation_names(node, directions)
    expected = len(DEFAULTS[node.op_type]) * directions
    if len(names) != expected:
        return f"{node.op_type} needs {expected} activations for {directions} direction(s), got {len(names)}"
    unknown = [name for name in names if name.lower() not in KINDS]
    if unknown:
        return (f"{node.op_type} activation {unknown[0]!r} is not one ONNX defines "
                f"({', '.join(kind.name for kind in KINDS.values())})")
    return None


def activations(node: Node, directions: int) -> list[list[Activation]]:
    """Per direction, the node's activations with alpha/beta taken from the attribute lists in order."""
    alphas = iter(node.attrs.get("activation_alpha", []))
    betas = iter(node.attrs.get("activation_beta", []))
    settled = []
    for name in activation_names(node, directions):
        kind = KINDS[name.lower()]
        alpha = next(alphas, kind.alpha) if kind.alpha is not None else 0.0
        beta = next(betas, kind.beta) if kind.beta is not None else 0.0
        settled.append(Activation(kind, float(alpha), float(beta)))
    per_direction = len(settled) // directions
    return [settled[d * per_direction:(d + 1) * per_direction] for d in range(directions)]
