"""Conversions between ONNX protobuf objects and IR values (types, attributes, nodes).

Used by the frontend (ONNX -> IR) and by ops whose inference or reference semantics are
delegated to the onnx package (IR -> ONNX node, one node at a time; a graph attribute goes
back through onnx_export.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, TypeProto, helper, numpy_helper

from compiler.ir.graph import Graph
from compiler.ir.types import OptionalType, SequenceType, TensorType, ValueType

_ONNX_TO_DTYPE = {
    TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16",
    TensorProto.DOUBLE: "float64", TensorProto.INT8: "int8", TensorProto.INT16: "int16",
    TensorProto.INT32: "int32", TensorProto.INT64: "int64", TensorProto.UINT8: "uint8",
    TensorProto.UINT16: "uint16", TensorProto.UINT32: "uint32", TensorProto.UINT64: "uint64",
    TensorProto.BOOL: "bool", TensorProto.STRING: "string", TensorProto.COMPLEX64: "complex64",
    TensorProto.COMPLEX128: "complex128", TensorProto.FLOAT8E4M3FN: "float8e4m3fn",
    TensorProto.FLOAT8E4M3FNUZ: "float8e4m3fnuz", TensorProto.FLOAT8E5M2: "float8e5m2",
    TensorProto.FLOAT8E5M2FNUZ: "float8e5m2fnuz", TensorProto.UINT4: "uint4", TensorProto.INT4: "int4",
    TensorProto.FLOAT4E2M1: "float4e2m1",
}
for _name, _dtype in (("FLOAT8E8M0", "float8e8m0"), ("UINT2", "uint2"), ("INT2", "int2")):
    if hasattr(TensorProto, _name):
        _ONNX_TO_DTYPE[getattr(TensorProto, _name)] = _dtype
_DTYPE_TO_ONNX = {v: k for k, v in _ONNX_TO_DTYPE.items()}


class UnsupportedTypeError(ValueError):
    """An ONNX type the IR cannot hold (sparse tensors, maps, unknown element types)."""


def dtype_from_onnx(elem_type: int) -> str:
    try:
        return _ONNX_TO_DTYPE[elem_type]
    except KeyError:
        name = TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() else elem_type
        raise UnsupportedTypeError(f"ONNX element type {name} is not supported") from None


def dtype_to_onnx(dtype: str) -> int:
    return _DTYPE_TO_ONNX[dtype]


def type_from_proto(type_proto: TypeProto) -> ValueType | None:
    """IR type of an ONNX TypeProto; None when the proto leaves the type unset."""
    kind = type_proto.WhichOneof("value")
    if kind is None:
        return None
    if kind == "tensor_type":
        tensor = type_proto.tensor_type
        if tensor.elem_type == 0:
            return None
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(
                (d.dim_value if d.dim_value >= 0 else None) if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor.shape.dim
            )
        return TensorType(dtype_from_onnx(tensor.elem_type), shape)
    if kind == "sequence_type":
        return SequenceType(type_from_proto(type_proto.sequence_type.elem_type))
    if kind == "optional_type":
        return OptionalType(type_from_proto(type_proto.optional_type.elem_type))
    raise UnsupportedTypeError(f"ONNX {kind} values are not supported")


def type_to_proto(value_type: ValueType | None) -> TypeProto:
    if value_type is None:
        return TypeProto()
    if isinstance(value_type, SequenceType):
        return helper.make_sequence_type_proto(type_to_proto(value_type.elem))
    if isinstance(value_type, OptionalType):
        return helper.make_optional_type_proto(type_to_proto(value_type.elem))
    shape = None if value_type.shape is None else list(value_type.shape)
    return helper.make_tensor_type_proto(dtype_to_onnx(value_type.dtype), shape)


def tensor_to_array(tensor: TensorProto, base_dir: str | None = None) -> np.ndarray:
    """A TensorProto's data as a numpy array (external data loaded from `base_dir`)."""
    if onnx.external_data_helper.uses_external_data(tensor):
        tensor = TensorProto.FromString(tensor.SerializeToString())
        onnx.external_data_helper.load_external_data_for_tensor(tensor, base_dir or ".")
    array = numpy_helper.to_array(tensor)
    if tensor.data_type == TensorProto.STRING:
        array = np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else b, otypes=[object])(array) \
            if array.size else array.astype(object)
    return array


def array_to_tensor(array: np.ndarray, name: str = "") -> TensorProto:
    array = np.asarray(array)
    if array.dtype == object:
        flat = [s.encode("utf-8") if isinstance(s, str) else s for s in array.reshape(-1)]
        return helper.make_tensor(name, TensorProto.STRING, array.shape, flat)
    return numpy_helper.from_array(array, name)


def attribute_from_proto(attr: AttributeProto, convert_graph) -> object:
    """Python value of an attribute; `convert_graph(GraphProto)` turns subgraphs into IR graphs."""
    kind = attr.type
    if kind == AttributeProto.FLOAT:
        return float(attr.f)
    if kind == AttributeProto.INT:
        return int(attr.i)
    if kind == AttributeProto.STRING:
        return attr.s.decode("utf-8")
    if kind == AttributeProto.TENSOR:
        return tensor_to_array(attr.t)
    if kind == AttributeProto.GRAPH:
        return convert_graph(attr.g)
    if kind == AttributeProto.FLOATS:
        return [float(x) for x in attr.floats]
    if kind == AttributeProto.INTS:
        return [int(x) for x in attr.ints]
    if kind == AttributeProto.STRINGS:
        return [s.decode("utf-8") for s in attr.strings]
    if kind == AttributeProto.TENSORS:
        return [tensor_to_array(t) for t in attr.tensors]
    if kind == AttributeProto.TYPE_PROTO:
        return type_from_proto(attr.tp)
    if kind == AttributeProto.SPARSE_TENSOR:
        return numpy_helper.to_array(attr.sparse_tensor)
    raise UnsupportedTypeError(f"attribute {attr.name!r} has unsupported type {AttributeProto.AttributeType.Name(kind)}")


def attribute_to_proto(name: str, value, attr_type: int | None = None) -> AttributeProto:
    """Back to ONNX; `attr_type` (from the op schema) disambiguates empty lists."""
    if isinstance(value, np.ndarray):
        return helper.make_attribute(name, array_to_tensor(value))
    if isinstance(value, Graph):
        from compiler.ops.onnx_export import graph_to_proto

        return helper.make_attribute(name, graph_to_proto(value))
    if isinstance(value, (TensorType, SequenceType, OptionalType)):
        return helper.make_attribute(name, type_to_proto(value))
    if isinstance(value, list) and not value and attr_type is not None:
        return helper.make_attribute(name, [], attr_type=attr_type)
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return helper.make_attribute(name, [array_to_tensor(v) for v in value])
    return helper.make_attribute(name, value)


def schema_for(op_type: str, domain: str, version: int | None):
    """The ONNX schema for an op at an opset version, or None when onnx has none."""
    try:
        if version is None:
            return onnx.defs.get_schema(op_type, domain=domain)
        return onnx.defs.get_schema(op_type, version, domain)
    except onnx.defs.SchemaError:
        return None
