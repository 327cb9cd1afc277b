"""Op library: one definition per op (type/shape inference + numpy reference semantics)."""

from compiler.ops.registry import OpDef, all_ops, infer_node, lookup, register

__all__ = ["OpDef", "all_ops", "infer_node", "lookup", "register"]
