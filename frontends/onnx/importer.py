"""ONNX -> IR: one Graph for the main graph, IR subgraphs for If/Loop/Scan bodies.

Bad models get errors that name the node; an unsupported model gets one error listing
every unsupported op at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from compiler.ir.graph import Graph, Value
from compiler.ops import lookup
from compiler.ops.onnx_bridge import UnsupportedTypeError, attribute_from_proto, schema_for, tensor_to_array, type_from_proto
from frontends.onnx.normalize import DROPPED, moved_value, rewrite_legacy_softmax, rule_for


class ModelImportError(ValueError):
    """The model file or proto is malformed; the message names the node or value at fault."""


class UnsupportedModelError(ModelImportError):
    """The model uses ops Kiln does not define; `unsupported` lists each (op, domain, opset, node names)."""

    def __init__(self, unsupported: list[tuple[str, str, int, list[str]]]):
        self.unsupported = unsupported
        lines = [f"  {domain or 'ai.onnx'}::{op} (opset {opset}) at nodes: {', '.join(names)}"
                 for op, domain, opset, names in unsupported]
        super().__init__(f"the model uses {len(unsupported)} unsupported op(s):\n" + "\n".join(lines))


def load_model(source) -> tuple[onnx.ModelProto, str | None]:
    """A ModelProto (local functions inlined) and the directory its external data lives in."""
    base_dir = None
    if isinstance(source, onnx.ModelProto):
        model = source
    else:
        try:
            if isinstance(source, (bytes, bytearray)):
                model = onnx.load_model_from_string(bytes(source))
            else:
                path = Path(source)
                if not path.is_file():
                    raise ModelImportError(f"model file {str(path)!r} does not exist")
                base_dir = str(path.parent)
                model = onnx.load(str(path), load_external_data=False)
        except (DecodeError, RuntimeError, ValueError, OSError) as error:
            if isinstance(error, ModelImportError):
                raise
            raise ModelImportError(f"could not parse {source if isinstance(source, (str, Path)) else 'the input'} "
                                   f"as an ONNX model ({type(error).__name__}: {error}); is it an .onnx file?") from None
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    return model, base_dir


@dataclass
class _Scope:
    """Name -> Value table of one graph, with a link to the enclosing graph for captures."""

    graph: Graph
    parent: "_Scope | None" = None
    names: dict[str, Value] = field(default_factory=dict)

    def resolve(self, name: str) -> Value | None:
        if name in self.names:
            return self.names[name]
        outer = None if self.parent is None else self.parent.resolve(name)
        if outer is None:
            return None
        value = self.graph.add_input(name, self.parent.graph.type_of(outer))
        self.graph.node(value.node).attrs["captured_from"] = name
        self.names[name] = value
        return value


class _Importer:
    def __init__(self, model: onnx.ModelProto, base_dir: str | None):
        self.model = model
        self.base_dir = base_dir
        self.opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
        self.unsupported: dict[tuple[str, str, int], list[str]] = {}
        self.unsupported_outputs: set[str] = set()  # values made by unsupported nodes: not dangling

    def run(self) -> Graph:
        graph = self.convert_graph(self.model.graph, None)
        if self.unsupported:
            raise UnsupportedModelError([(op, dom, ver, names) for (op, dom, ver), names in sorted(self.unsupported.items())])
        return graph

    def convert_graph(self, proto: onnx.GraphProto, parent: _Scope | None) -> Graph:
        graph = Graph(proto.name or "main")
        scope = _Scope(graph, parent)
        initializers = {t.name for t in proto.initializer}
        for value_info in proto.input:
            if value_info.name not in initializers:
                scope.names[value_info.name] = graph.add_input(value_info.name, self.value_type(value_info))
        for tensor in proto.initializer:
            scope.names[tensor.name] = graph.add_constant(self.array(tensor, f"initializer {tensor.name!r}"), tensor.name)
        for sparse in proto.sparse_initializer:
            name = sparse.values.name
            scope.names[name] = graph.add_constant(onnx.numpy_helper.to_array(sparse), name)

        pending = []
        for index, node_proto in enumerate(proto.node):
            name = node_proto.name or f"{node_proto.op_type}_{index}"
            if node_proto.op_type == "Constant" and node_proto.domain in ("", "ai.onnx"):
                value = graph.add_constant(self.constant_value(node_proto, name), node_proto.output[0])
                scope.names[node_proto.output[0]] = value
                continue
            created = self.create_node(graph, node_proto, name)
            if created is None:
                self.unsupported_outputs.update(node_proto.output)
                continue
            node, casts = created
            for i, output in enumerate(node_proto.output):
                if output:
                    scope.names[output] = Value(node.name, i)
            pending.append((node, node_proto, casts))
        for node, node_proto, casts in pending:
            self.wire(graph, scope, node, node_proto, casts)
        for value_info in proto.output:
            value = scope.resolve(value_info.name)
            if value is None and value_info.name in self.unsupported_outputs:
                continue
            if value is None:
                raise ModelImportError(f"graph {graph.name!r}: output {value_info.name!r} is produced by no node, "
                                       "input or initializer")
            graph.add_output(value_info.name, value)
        return graph

    def create_node(self, graph: Graph, proto: onnx.NodeProto, name: str):
        domain = "" if proto.domain == "ai.onnx" else proto.domain
        opset = self.opsets.get(domain)
        schema = schema_for(proto.op_type, domain, opset) if opset is not None else None
        if schema is None or lookup(proto.op_type, domain) is None:
            self.unsupported.setdefault((proto.op_type, domain, opset or 0), []).append(name)
            return None
        attrs = self.attributes(proto, schema, name)
        version = schema.since_version
        num_inputs = len(proto.input)
        extra_inputs, casts = [], []
        rule = rule_for(proto.op_type, domain, version)
        if rule is not None:
            version = rule.new_version
            for dropped in DROPPED.get(proto.op_type, ()):
                attrs.pop(dropped, None)
            for move in rule.moves:
                if move.attribute in attrs:
                    extra_inputs.append((move, moved_value(move, attrs.pop(move.attribute))))
            num_inputs = max([num_inputs] + [m.index + 1 for m, _ in extra_inputs])
        node = graph.add_node(proto.op_type, [None] * num_inputs, attrs, domain=domain, version=version,
                              num_outputs=len(proto.output), name=name,
                              output_names=[o or f"{name}:unused{i}" for i, o in enumerate(proto.output)])
        for move, array in extra_inputs:
            value = graph.add_constant(array, f"{name}.{move.attribute}")
            if move.dtype == "like_data":
                value = Value(graph.add_node("CastLike", [value, None], version=15, name=f"{name}.{move.attribute}.cast").name)
                casts.append(value.node)
            graph.set_input(node, move.index, value)
        return node, casts

    def wire(self, graph: Graph, scope: _Scope, node, proto: onnx.NodeProto, casts: list[str]) -> None:
        captures: list[str] = []
        for key, value in list(node.attrs.items()):
            if isinstance(value, onnx.GraphProto):
                node.attrs[key] = subgraph = self.convert_graph(value, scope)
                captures += [subgraph.node(n).attrs["captured_from"] for n in subgraph.inputs
                             if "captured_from" in subgraph.node(n).attrs and
                             subgraph.node(n).attrs["captured_from"] not in captures]
        for index, input_name in enumerate(proto.input):
            if not input_name:
                continue
            value = scope.resolve(input_name)
            if value is None and input_name in self.unsupported_outputs:
                continue
            if value is None:
                raise ModelImportError(f"node {node.name!r} ({node.op_type}): input {index} refers to {input_name!r}, "
                                       "which no node, graph input or initializer produces (missing initializer?)")
            graph.set_input(node, index, value)
        for cast in casts:
            graph.set_input(cast, 1, graph.input_values(node)[0])
        if captures:
            for subgraph in graph.subgraphs(node).values():
                _align_captures(subgraph, captures)
            base = node.num_inputs
            node.num_inputs += len(captures)
            for offset, name in enumerate(captures):
                graph.set_input(node, base + offset, scope.resolve(name))

    def attributes(self, proto: onnx.NodeProto, schema, name: str) -> dict:
        attrs = {}
        for attr in proto.attribute:
            spec = schema.attributes.get(attr.name)
            where = f"node {name!r} ({proto.op_type}-{schema.since_version})"
            if spec is None:
                raise ModelImportError(f"{where}: attribute {attr.name!r} is not defined by the op; "
                                       f"known attributes: {', '.join(sorted(schema.attributes)) or 'none'}")
            if attr.ref_attr_name:
                raise ModelImportError(f"{where}: attribute {attr.name!r} refers to a function attribute outside a function")
            if attr.type != spec.type:
                raise ModelImportError(f"{where}: attribute {attr.name!r} has type "
                                       f"{onnx.AttributeProto.AttributeType.Name(attr.type)}, the op expects "
                                       f"{onnx.AttributeProto.AttributeType.Name(spec.type)}")
            try:
                attrs[attr.name] = attribute_from_proto(attr, lambda g: g)
            except (UnsupportedTypeError, ValueError) as error:
                raise ModelImportError(f"{where}: attribute {attr.name!r}: {error}") from None
        return attrs

    def constant_value(self, proto: onnx.NodeProto, name: str):
        if len(proto.attribute) != 1:
            raise ModelImportError(f"node {name!r} (Constant) must have exactly one value attribute")
        attr = proto.attribute[0]
        if attr.name == "value":
            return self.array(attr.t, f"node {name!r} (Constant)")
        try:
            return attribute_from_proto(attr, lambda g: g) if attr.name != "sparse_value" else \
                onnx.numpy_helper.to_array(attr.sparse_tensor)
        except (UnsupportedTypeError, ValueError) as error:
            raise ModelImportError(f"node {name!r} (Constant): {error}") from None

    def array(self, tensor: onnx.TensorProto, where: str):
        try:
            return tensor_to_array(tensor, self.base_dir)
        except (UnsupportedTypeError, ValueError, OSError, TypeError) as error:
            raise ModelImportError(f"{where}: cannot read its data ({error})") from None

    def value_type(self, value_info: onnx.ValueInfoProto):
        try:
            return type_from_proto(value_info.type)
        except UnsupportedTypeError as error:
            raise ModelImportError(f"graph value {value_info.name!r}: {error}") from None


def import_model(source) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) into a typed, verified IR Graph."""
    from compiler.ir.verifier import verify
    from compiler.passes.infer_types import infer_types

    model, base_dir = load_model(source)
    graph = _Importer(model, base_dir).run()
    rewrite_legacy_softmax(graph)
    verify(graph)
    infer_types(graph)
    return graph


def _align_captures(subgraph: Graph, captures: list[str]) -> None:
    """Give the subgraph one trailing captured input per name in `captures`, in that order."""
    own = [n for n in subgraph.inputs if "captured_from" not in subgraph.node(n).attrs]
    by_name = {subgraph.node(n).attrs["captured_from"]: n for n in subgraph.inputs if n not in own}
    ordered = []
    for name in captures:
        if name not in by_name:
            value = subgraph.add_input(name, None)
            subgraph.node(value.node).attrs["captured_from"] = name
            by_name[name] = value.node
        ordered.append(by_name[name])
    subgraph.inputs = own + ordered
