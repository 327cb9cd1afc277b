"""Which dtypes an elementwise op compiles for, said the same way by every target."""

from __future__ import annotations

from compiler.ir.graph import Node


def elementwise_problem(node: Node, dtypes: list, handled, numbers, target: str) -> str | None:
    """Why elementwise `node` with input dtypes `dtypes` (None where absent) is not compiled by
    `target`, whose kernel for it takes first inputs of `handled` dtypes and numeric `numbers`; None
    when it is."""
    if dtypes[0] not in handled:
        return f"{node.op_type} on {dtypes[0]} is not compiled by the {target} target (it handles " \
               f"{', '.join(sorted(handled))})"
    if node.op_type == "Pow" and dtypes[1] not in numbers:
        return f"Pow with a {dtypes[1]} exponent is not compiled by the {target} target"
    return None
