"""onnx.backend API for Kiln: `get_backend(target)` returns a Backend that compiles with
that target and runs the artifact in Kiln's runtime (used by the ONNX conformance suite)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from compiler.ir.types import TensorType
from compiler.ops.onnx_bridge import tensor_to_array


def as_value(value):
    """An ONNX test value as Kiln takes it: TensorProto -> numpy array, lists element by element."""
    if isinstance(value, onnx.TensorProto):
        return tensor_to_array(value)
    if isinstance(value, list):
        return [as_value(v) for v in value]
    return value


class KilnBackendRep(BackendRep):
    """A compiled model: run(inputs) takes arrays in input order (or a dict by name).

    When the model does not compile as declared (symbolic dims, or shape-setting tensors such
    as Reshape's `shape` fed as graph inputs), it is compiled at run time for the inputs given:
    their shapes become static and shape-setting inputs are frozen to their values
    (compiler/specialize.py). One artifact is kept per distinct specialisation.
    """

    def __init__(self, graph, target: str, options: dict, loaded=None):
        self.graph, self.target, self.options = graph, target, options
        self.loaded = loaded
        self._specialized: dict[tuple, object] = {}

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = {name: as_value(value) for name, value in inputs.items()}
        else:
            if not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            feeds = {name: as_value(value) for name, value in zip(self.graph.inputs, inputs)}
        model = self.loaded or self._specialize(feeds)
        if model is not self.loaded:
            feeds = {name: value for name, value in feeds.items() if name not in model.frozen_inputs}
        results = model.infer(feeds)
        return tuple(results[info.name] for info in model.outputs)

    def _specialize(self, feeds: dict):
        import runtime
        from compiler.driver import compile
        from compiler.specialize import shape_setting_inputs

        tensors = [name for name in self.graph.inputs if isinstance(self.graph.node(name).outputs[0], TensorType)]
        arrays = {name: np.asarray(feeds[name]) for name in tensors
                  if isinstance(feeds.get(name), (np.ndarray, np.generic))}
        frozen = {name: arrays[name] for name in shape_setting_inputs(self.graph) if name in arrays}
        shapes = {name: value.shape for name, value in arrays.items() if name not in frozen}
        key = (tuple((name, value.dtype.str, value.shape) for name, value in sorted(arrays.items())),
               tuple(value.tobytes() for _, value in sorted(frozen.items())))
        if key not in self._specialized:
            artifact = compile(self.graph, self.target, shapes=shapes, freeze=frozen, **self.options)
            self._specialized[key] = runtime.load(artifact)
        return self._specialized[key]


class KilnBackend(Backend):
    target = "ref"

    @classmethod
    def prepare(cls, model, device: str = "CPU", **options):
        import runtime
        from compiler.driver import UnsupportedByTargetError, compile, to_graph

        super().prepare(model, device, **options)
        graph = to_graph(model)
        try:
            loaded = runtime.load(compile(graph, cls.target, **options))
        except UnsupportedByTargetError:
            loaded = None  # compiled at run time, specialised to the inputs given
        return KilnBackendRep(graph, cls.target, options, loaded)

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
