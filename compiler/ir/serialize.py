"""IR <-> JSON + aligned weights, so a ref artifact can carry the graph itself.

Tensors go to a weights blob (each 64-byte aligned, referenced by offset); strings and
everything else go into the JSON. Nodes are written in topological order, so the same
graph always gives the same bytes.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import OptionalType, SequenceType, TensorType, dtype_of_array, numpy_dtype

ALIGNMENT = 64


class WeightsWriter:
    """Appends arrays to one blob, each starting at a multiple of ALIGNMENT bytes."""

    def __init__(self):
        self.blob = bytearray()

    def add(self, array: np.ndarray) -> dict:
        array = np.ascontiguousarray(array)
        self.blob.extend(b"\0" * (-len(self.blob) % ALIGNMENT))
        offset = len(self.blob)
        self.blob.extend(array.tobytes())
        return {"offset": offset, "nbytes": array.nbytes}


def encode_type(value_type):
    if value_type is None:
        return None
    if isinstance(value_type, SequenceType):
        return {"sequence": encode_type(value_type.elem)}
    if isinstance(value_type, OptionalType):
        return {"optional": encode_type(value_type.elem)}
    return {"tensor": value_type.dtype, "shape": None if value_type.shape is None else list(value_type.shape)}


def decode_type(data):
    if data is None:
        return None
    if "sequence" in data:
        return SequenceType(decode_type(data["sequence"]))
    if "optional" in data:
        return OptionalType(decode_type(data["optional"]))
    return TensorType(data["tensor"], None if data["shape"] is None else tuple(data["shape"]))


def _encode_array(array: np.ndarray, weights: WeightsWriter) -> dict:
    head = {"dtype": dtype_of_array(array), "shape": list(array.shape)}
    if array.dtype == object:
        return {**head, "strings": array.reshape(-1).tolist()}
    return {**head, **weights.add(array)}


def _encode_attr(value, weights: WeightsWriter):
    if isinstance(value, Graph):
        return {"graph": encode_graph(value, weights)}
    if isinstance(value, np.ndarray):
        return {"tensor": _encode_array(value, weights)}
    if isinstance(value, (TensorType, SequenceType, OptionalType)):
        return {"type": encode_type(value)}
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return {"tensors": [_encode_array(v, weights) for v in value]}
    return {"value": value}


def encode_graph(graph: Graph, weights: WeightsWriter) -> dict:
    """A JSON-ready dict for `graph`; arrays are appended to `weights`."""
    nodes = []
    for node in graph.topological_order():
        inputs = [None if v is None else [v.node, v.index] for v in graph.input_values(node)]
        nodes.append({
            "name": node.name, "op": node.op_type, "domain": node.domain, "version": node.version,
            "attrs": {k: _encode_attr(v, weights) for k, v in sorted(node.attrs.items())},
            "inputs": inputs, "outputs": [encode_type(t) for t in node.outputs], "output_names": node.output_names,
        })
    return {"name": graph.name, "inputs": list(graph.inputs), "nodes": nodes,
            "outputs": [[name, v.node, v.index] for name, v in graph.outputs]}


def _decode_array(data: dict, weights) -> np.ndarray:
    if "strings" in data:
        return np.array(data["strings"], dtype=object).reshape(data["shape"])
    dtype = numpy_dtype(data["dtype"])
    flat = np.frombuffer(weights, dtype=dtype, count=data["nbytes"] // dtype.itemsize, offset=data["offset"])
    return flat.reshape(data["shape"])


def _decode_attr(data: dict, weights):
    if "graph" in data:
        return decode_graph(data["graph"], weights)
    if "tensor" in data:
        return _decode_array(data["tensor"], weights)
    if "type" in data:
        return decode_type(data["type"])
    if "tensors" in data:
        return [_decode_array(t, weights) for t in data["tensors"]]
    return data["value"]


def decode_graph(data: dict, weights) -> Graph:
    """Rebuild a Graph from `encode_graph` output; `weights` is the blob (bytes or a memory map)."""
    graph = Graph(data["name"])
    for item in data["nodes"]:
        inputs = [None if v is None else Value(v[0], v[1]) for v in item["inputs"]]
        graph.add_node(item["op"], inputs, {k: _decode_attr(v, weights) for k, v in item["attrs"].items()},
                       domain=item["domain"], version=item["version"],
                       outputs=[decode_type(t) for t in item["outputs"]], name=item["name"],
                       output_names=item["output_names"])
    graph.inputs = list(data["inputs"])
    graph.outputs = [(name, Value(node, index)) for name, node, index in data["outputs"]]
    return graph
