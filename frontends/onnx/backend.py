"""onnx.backend API for Kiln: `get_backend(target)` returns a Backend that compiles with
that target and runs the artifact in Kiln's runtime (used by the ONNX conformance suite)."""

from __future__ import annotations

import onnx
from onnx.backend.base import Backend, BackendRep

from compiler.ops.onnx_bridge import tensor_to_array


def as_value(value):
    """An ONNX test value as Kiln takes it: TensorProto -> numpy array, lists element by element."""
    if isinstance(value, onnx.TensorProto):
        return tensor_to_array(value)
    if isinstance(value, list):
        return [as_value(v) for v in value]
    return value


class KilnBackendRep(BackendRep):
    """A compiled, loaded model: run(inputs) takes arrays in input order (or a dict by name)."""

    def __init__(self, model):
        self.model = model

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = {name: as_value(value) for name, value in inputs.items()}
        else:
            if not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            feeds = {info.name: as_value(value) for info, value in zip(self.model.inputs, inputs)}
        results = self.model.infer(feeds)
        return tuple(results[info.name] for info in self.model.outputs)


class KilnBackend(Backend):
    target = "ref"

    @classmethod
    def prepare(cls, model, device: str = "CPU", **options):
        import runtime
        from compiler.driver import compile

        super().prepare(model, device, **options)
        return KilnBackendRep(runtime.load(compile(model, cls.target, **options)))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **options):
        return cls.prepare(model, device, **options).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **options):
        """Run one NodeProto on `inputs` (arrays) by wrapping it in a one-node model."""
        values = [as_value(v) for v in inputs]
        from compiler.ops.onnx_bridge import type_to_proto
        from compiler.ir.types import type_of_value

        graph_inputs = [onnx.helper.make_value_info(name, type_to_proto(type_of_value(value)))
                        for name, value in zip(node.input, values) if name]
        graph_outputs = [onnx.helper.make_empty_tensor_value_info(name) for name in node.output if name]
        graph = onnx.helper.make_graph([node], f"{node.op_type}_node", graph_inputs, graph_outputs)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(node.domain, options.pop(
            "opset_version", onnx.defs.onnx_opset_version()))])
        return cls.run_model(model, [v for name, v in zip(node.input, values) if name], device, **options)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")


def get_backend(target: str = "ref") -> type[KilnBackend]:
    """The onnx.backend Backend class that compiles for `target`."""
    from compiler.targets.base import target_names

    if target not in target_names():
        raise ValueError(f"unknown target {target!r}; available targets: {', '.join(target_names())}")
    return type(f"Kiln{target.capitalize()}Backend", (KilnBackend,), {"target": target})


__all__ = ["KilnBackend", "KilnBackendRep", "as_value", "get_backend"]
