"""Which targets can compile which nodes of a model, and why not: `query_model` and `kiln check`.

Support is judged as compile judges it, on the graph after each target's passes (folding often
removes what a target could not compile), so a node named here is one the target would refuse.
"""

from __future__ import annotations

from typing import Iterable

from compiler.driver import UnsupportedByTargetError, optimize
from compiler.targets.base import target_names


def query_model(model, targets: Iterable[str] | str | None = None, **options) -> dict[str, list[dict]]:
    """{target: [{"node", "op", "reason"} for every node it cannot compile]} (an empty list: it compiles
    all), for `targets` (default: every registered target but the composite ones such as hetero). Ops Kiln does not define at all make the
    import fail for every target, so each lists them."""
    from frontends.onnx.importer import UnsupportedModelError

    targets = target_names(composite=False) if targets is None else [targets] if isinstance(targets, str) else list(targets)
    report = {}
    for target in targets:
        try:
            optimize(model, target, **options)
            report[target] = []
        except UnsupportedByTargetError as error:
            report[target] = [{"node": u.node, "op": u.op, "reason": u.reason} for u in error.unsupported]
        except UnsupportedModelError as error:
            report[target] = [{"node": name, "op": f"{domain or 'ai.onnx'}::{op}",
                               "reason": f"no definition at opset {opset}"}
                              for op, domain, opset, names in error.unsupported for name in names]
    return report
