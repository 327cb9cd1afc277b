"""Opset normalisation: attributes that later opsets turned into inputs become inputs.

After import, a node of these ops always has the newer form, so passes and targets see
one shape of Reshape, Squeeze, Slice, Pad, Clip, TopK, Split, Reduce*, ... whatever the
model's opset. Each rule says which attributes move to which input index and at which
version the op took that form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AttributeToInput:
    attribute: str
    index: int
    dtype: str  # "int64", "float32", or "like_data": cast to input 0's dtype with CastLike


@dataclass(frozen=True)
class Rule:
    new_version: int
    moves: tuple[AttributeToInput, ...]


def _axes(version: int) -> Rule:
    return Rule(version, (AttributeToInput("axes", 1, "int64"),))


RULES: dict[str, Rule] = {
    "Reshape": Rule(5, (AttributeToInput("shape", 1, "int64"),)),
    "Squeeze": _axes(13),
    "Unsqueeze": _axes(13),
    "ReduceSum": _axes(13),
    **{op: _axes(18) for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare")},
    "Split": Rule(13, (AttributeToInput("split", 1, "int64"),)),
    "Slice": Rule(10, (AttributeToInput("starts", 1, "int64"), AttributeToInput("ends", 2, "int64"),
                       AttributeToInput("axes", 3, "int64"))),
    "TopK": Rule(10, (AttributeToInput("k", 1, "int64"),)),
    "Pad": Rule(11, (AttributeToInput("pads", 1, "int64"), AttributeToInput("value", 2, "like_data"))),
    "Clip": Rule(11, (AttributeToInput("min", 1, "like_data"), AttributeToInput("max", 2, "like_data"))),
    "Dropout": Rule(12, (AttributeToInput("ratio", 1, "float32"),)),
}

# Attributes dropped on the way: they meant nothing at inference time in the old opset.
DROPPED = {"Dropout": ("is_test",), "Pad": (), "Clip": ()}


def rule_for(op_type: str, domain: str, version: int | None) -> Rule | None:
    rule = RULES.get(op_type) if domain == "" else None
    if rule is None or version is None or version >= rule.new_version:
        return None
    return rule


def moved_value(move: AttributeToInput, value) -> np.ndarray:
    """The constant input that replaces attribute value `value`."""
    if move.attribute == "k":
        return np.array([value], dtype=np.int64)
    if move.dtype == "int64":
        return np.asarray(value, dtype=np.int64)
    return np.asarray(value, dtype=np.float32)


LEGACY_SOFTMAX = ("Softmax", "LogSoftmax", "Hardmax")


def rewrite_legacy_softmax(graph) -> None:
    """Softmax-family ops before opset 13 flatten to 2-D at `axis` (default 1); make that explicit.

    Becomes Reshape(Softmax-13(Flatten(x, axis), axis=-1), Shape(x)), which every later stage
    understands with one meaning of `axis`.
    """
    from compiler.ir.graph import Value

    for node in graph.nodes():
        for subgraph in graph.subgraphs(node).values():
            rewrite_legacy_softmax(subgraph)
        if node.domain or node.op_type not in LEGACY_SOFTMAX or node.version is None or node.version >= 13:
            continue
        x = graph.input_values(node)[0]
        axis = node.attrs.get("axis", 1)
        flat = graph.add_node("Flatten", [x], {"axis": axis}, version=13, name=f"{node.name}.flatten")
        shape = graph.add_node("Shape", [x], version=13, name=f"{node.name}.shape")
        inner = graph.add_node(node.op_type, [Value(flat.name)], {"axis": -1}, version=13, name=f"{node.name}.2d")
        graph.replace_node(node, "Reshape", [Value(inner.name), Value(shape.name)], version=14)
