"""The op registry: one OpDef per (domain, op type), filled by the family modules.

An OpDef joins the two halves of an op's definition: `infer` (output types from input
types and any constant inputs) and `kernel` (a factory that prepares the numpy reference
semantics for one node and returns a callable from input values to output values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from compiler.ir.graph import Node
from compiler.submodules import import_submodules
from compiler.ir.types import ValueType

InferFn = Callable[[Node, list, list], list]
"""(node, input types, constant input arrays or None) -> output types (None where unknown)."""

Kernel = Callable[[list], list]
KernelFactory = Callable[[Node, list, list], Kernel]
"""(node, input types, which inputs are present) -> kernel: input values (None where absent) -> output values."""


@dataclass(frozen=True)
class OpDef:
    op_type: str
    domain: str
    family: str
    infer: InferFn
    kernel: KernelFactory


_REGISTRY: dict[tuple[str, str], OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    """Add an op definition; a second definition of the same op is a programming error."""
    key = (opdef.domain, opdef.op_type)
    if key in _REGISTRY:
        raise ValueError(f"op {opdef.domain or 'ai.onnx'}::{opdef.op_type} is defined twice "
                         f"(families {_REGISTRY[key].family!r} and {opdef.family!r})")
    _REGISTRY[key] = opdef
    return opdef


def lookup(op_type: str, domain: str = "") -> OpDef | None:
    _load_families()
    return _REGISTRY.get((domain, op_type))


def all_ops() -> list[OpDef]:
    _load_families()
    return sorted(_REGISTRY.values(), key=lambda d: (d.domain, d.op_type))


def infer_node(node: Node, input_types: Sequence[ValueType | None],
               input_values: Sequence[np.ndarray | None]) -> list[ValueType | None]:
    """Output types of `node`; raises KeyError naming the op when nobody defines it."""
    opdef = lookup(node.op_type, node.domain)
    if opdef is None:
        raise KeyError(f"node {node.name!r}: op {node.qualified_op} is not defined in compiler/ops")
    return opdef.infer(node, list(input_types), list(input_values))


def _load_families() -> None:
    """Import every family module once; each registers its ops on import."""
    import_submodules("compiler.ops", frozenset({"registry", "onnx_bridge", "onnx_semantics", "interpreter"}))
