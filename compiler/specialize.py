"""Input specialisation before the passes run: static input shapes, and inputs frozen to values.

Ahead-of-time targets need static shapes. Models often leave the batch or resolution
symbolic (`shapes` fixes them, as OpenVINO's reshape does), and some take shape-setting
tensors such as Reshape's `shape` or Resize's `sizes` as graph inputs (`freeze` turns such
inputs into constants with the given values, as OpenVINO's model conversion does with
`input=name->value`), so the shape computations fold at compile time.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType, dtype_of_array, format_dim
from compiler.ops.shape_operands import SHAPE_ONLY_OPS, SHAPE_OPERANDS
from compiler.passes.infer_types import infer_types


class SpecializationError(ValueError):
    """A requested input shape or frozen value does not fit the model."""


def _tensor_input(graph: Graph, name: str, what: str) -> TensorType:
    if name not in graph.inputs:
        raise SpecializationError(f"{what} names input {name!r}, but the model's inputs are {graph.inputs}")
    declared = graph.node(name).outputs[0]
    if not isinstance(declared, TensorType):
        raise SpecializationError(f"{what} for input {name!r}: it is a {declared}, not a tensor")
    return declared


def _check_shape(name: str, declared: TensorType, shape: tuple[int, ...], bindings: dict) -> None:
    """The new shape keeps the declared rank, fixed dims, and one size per symbolic dim name."""
    expected = "[" + ",".join(format_dim(d) for d in declared.shape) + "]" if declared.shape is not None else None
    if declared.shape is not None and len(shape) != len(declared.shape):
        raise SpecializationError(f"input {name!r}: shape {list(shape)} has rank {len(shape)}, the model declares "
                                  f"rank {len(declared.shape)} {expected}")
    for axis, (dim, size) in enumerate(zip(declared.shape or (), shape)):
        if isinstance(dim, int) and dim != size:
            raise SpecializationError(f"input {name!r}: axis {axis} is fixed to {dim} by the model ({expected}); "
                                      f"got {size}")
        if isinstance(dim, str) and bindings.setdefault(dim, (size, name))[0] != size:
            first_size, first_input = bindings[dim]
            raise SpecializationError(f"dim {dim!r} is {first_size} in input {first_input!r} but {size} in "
                                      f"input {name!r}; inputs sharing a dim name must agree")


def specialize_inputs(graph: Graph, shapes: Mapping[str, Sequence[int]] | None = None,
                      freeze: Mapping[str, object] | None = None) -> Graph:
    """Give inputs in `shapes` those static shapes and replace inputs in `freeze` by constants
    holding the given values; then re-infer every type. Works on `graph` in place and returns it."""
    shapes, freeze = dict(shapes or {}), dict(freeze or {})
    bindings: dict = {}
    for name, shape in shapes.items():
        declared = _tensor_input(graph, name, "shapes")
        shape = tuple(int(size) for size in shape)
        if any(size < 0 for size in shape):
            raise SpecializationError(f"input {name!r}: shape {list(shape)} has a negative size")
        _check_shape(name, declared, shape, bindings)
        graph.node(name).outputs[0] = TensorType(declared.dtype, shape)
    for name, value in freeze.items():
        declared = _tensor_input(graph, name, "freeze")
        array = np.asarray(value)
        if dtype_of_array(array) != declared.dtype:
            raise SpecializationError(f"freeze: input {name!r} is {declared.dtype}, the value given is "
                                      f"{dtype_of_array(array)}")
        _check_shape(name, declared, array.shape, bindings)
        constant = graph.add_constant(array, name=f"{name}_frozen")
        graph.replace_all_uses(Value(name, 0), constant)
        graph.remove_node(name)
    if shapes or freeze:
        infer_types(graph)
    return graph


def shape_setting_inputs(graph: Graph) -> list[str]:
    """Graph inputs whose values reach a shape-setting operand (compiler/ops/shape_operands.py),
    directly or through other nodes; walking back stops at ops that read only shapes."""
    pending = []
    for node in graph.nodes():
        positions = SHAPE_OPERANDS.get(node.op_type, ()) if node.domain == "" else ()
        values = graph.input_values(node)
        pending.extend(values[i].node for i in positions if i < len(values) and values[i] is not None)
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        node = graph.node(name)
        if node.op_type not in SHAPE_ONLY_OPS:
            pending.extend(value.node for value in graph.input_values(node) if value is not None)
    return [name for name in graph.inputs if name in reached]
