"""Default halves of an ONNX op's definition, delegated to the onnx package.

Inference runs the op schema's own shape-inference function on a one-node view of the
IR node (symbolic dims pass through as dim_params); reference semantics use the
onnx.reference implementation of the op at the node's opset version.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import RuntimeContextError

from compiler.ir.graph import Node
from compiler.ops.onnx_bridge import array_to_tensor, attribute_to_proto, schema_for, type_from_proto, type_to_proto
from compiler.ops.registry import OpDef, register

# Constant inputs up to this many elements are shown to shape inference (shapes, axes, pads...).
_MAX_INFERENCE_DATA = 1 << 16


class OpInferenceError(ValueError):
    """The op's constraints reject its input types (wrong dtype, incompatible shapes...)."""


def input_names(node: Node) -> list[str]:
    return [f"in{i}" for i in range(node.num_inputs)]


def node_to_proto(node: Node, present: Iterable[bool] | None = None) -> onnx.NodeProto:
    """A single ONNX node equivalent to `node`, inputs named in0.., outputs out0.."""
    schema = schema_for(node.op_type, node.domain, node.version)
    attr_types = {name: a.type for name, a in schema.attributes.items()} if schema else {}
    names = input_names(node)
    if present is not None:
        names = [n if p else "" for n, p in zip(names, present)]
        while names and names[-1] == "":
            names.pop()
    attrs = [attribute_to_proto(k, v, attr_types.get(k)) for k, v in sorted(node.attrs.items())]
    proto = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.outputs))],
                             name=node.name, domain=node.domain)
    proto.attribute.extend(attrs)
    return proto


def infer_with_schema(node: Node, input_types: list, input_values: list) -> list:
    """Output types from the ONNX schema's inference function; None where it cannot tell."""
    unknown = [None] * len(node.outputs)
    if any(t is None for t in input_types[: _min_inputs(node)]):
        return unknown
    schema = schema_for(node.op_type, node.domain, node.version)
    if schema is None or not schema.has_type_and_shape_inference_function:
        return unknown
    present = [t is not None for t in input_types]
    proto = node_to_proto(node, present)
    types = {f"in{i}": type_to_proto(t) for i, t in enumerate(input_types) if t is not None}
    data = {f"in{i}": array_to_tensor(v, f"in{i}") for i, v in enumerate(input_values)
            if v is not None and v.size <= _MAX_INFERENCE_DATA}
    try:
        result = onnx.shape_inference.infer_node_outputs(
            schema, proto, types, data, opset_imports=[helper.make_opsetid(node.domain, node.version)])
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as error:
        shapes = ", ".join(str(t) for t in input_types)
        raise OpInferenceError(f"node {node.name!r} ({node.qualified_op}): inputs ({shapes}) are rejected by the "
                               f"op's definition: {str(error).strip()}") from None
    return [type_from_proto(result[f"out{i}"]) if f"out{i}" in result else None for i in range(len(node.outputs))]


def _min_inputs(node: Node) -> int:
    schema = schema_for(node.op_type, node.domain, node.version)
    return schema.min_input if schema else node.num_inputs


def _load_op_class(node: Node, proto: onnx.NodeProto, input_types: list):
    if node.domain == "":
        from onnx.reference.ops import load_op
    elif node.domain == "ai.onnx.ml":
        from onnx.reference.ops.aionnxml import load_op
    elif node.domain == "ai.onnx.preview.training":
        from onnx.reference.ops.aionnx_preview_training import load_op
    elif node.domain == "ai.onnx.preview":
        from onnx.reference.ops.aionnx_preview import load_op
    else:
        raise NotImplementedError(f"no reference implementation for domain {node.domain!r}")
    if node.domain != "":
        return load_op(node.domain, node.op_type, node.version)
    try:
        return load_op(node.domain, node.op_type, node.version, evaluator_cls=ReferenceEvaluator)
    except RuntimeContextError:
        return load_op(node.domain, node.op_type, node.version, node=proto,
                       input_types=[type_to_proto(t) for t in input_types], evaluator_cls=ReferenceEvaluator)


def _as_output(value):
    if value is None or isinstance(value, list):
        return value
    return np.asarray(value)


def onnx_reference_kernel(node: Node, input_types: list, present: list):
    """A kernel running onnx.reference's implementation of the node's op."""
    proto = node_to_proto(node, present)
    op_class = _load_op_class(node, proto, input_types)
    opsets = {"": onnx.defs.onnx_opset_version(), node.domain: node.version}  # "": for graph attributes' nodes
    run_params = {"log": lambda *args: None, "opsets": opsets, "verbose": 0,
                  "new_ops": None, "existing_functions": {}, "evaluator_cls": ReferenceEvaluator}
    implementation = op_class(proto, run_params)
    count = len(proto.input)

    def kernel(inputs: list) -> list:
        return [_as_output(r) for r in implementation.run(*inputs[:count])]

    return kernel


def onnx_ops(family: str, names: Iterable[str], domain: str = "") -> None:
    """Register ONNX ops whose inference and reference semantics both come from the onnx package."""
    for name in names:
        register(OpDef(name, domain, family, infer_with_schema, onnx_reference_kernel))
