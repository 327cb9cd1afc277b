"""An ONNX graph run as a torch module whose tensors are the graph's own initializers, by name.

bench/trained_models.py trains the benchmark CNNs with it and writes the tensors back into the same
ModelProto, so the trained graph is node for node the benchmark's; bench/gpu_vs_torch.py runs the
benchmark models (the CNNs and the BERT-style encoder) with it as PyTorch eager on a GPU. (onnx2torch
would need torchvision, whose PyPI wheels link CUDA torch; the benchmark models use two dozen ops,
interpreted here.)

Training runs batches at a lower resolution than the graph was written for, so two rules hold:
a Reshape keeps the input's batch dimension, and an AveragePool whose window covers its whole
input at the graph's own resolution pools globally at any resolution. Integer initializers (shapes,
axes) and shape arithmetic stay numpy on the host, as a hand-written module keeps them in Python.
Needs torch (the `train` extra).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

TRAINABLE = {"Conv": (1, 2), "Gemm": (1, 2), "BatchNormalization": (1, 2)}


class OnnxModule(torch.nn.Module):
    """Trainable: Conv/Gemm weights and biases and BatchNormalization scale/shift. Running
    statistics are buffers that a training-mode forward updates with `bn_momentum`."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        self.nodes = list(graph.node)
        self.output_name = graph.output[0].name
        constants = {t.name for t in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in constants]
        trainable = {node.input[i] for node in self.nodes for i in TRAINABLE.get(node.op_type, ())
                     if i < len(node.input)}
        floats = [t for t in graph.initializer if t.data_type != onnx.TensorProto.INT64]
        self.host = {t.name: numpy_helper.to_array(t) for t in graph.initializer
                     if t.data_type == onnx.TensorProto.INT64}
        self.names = [t.name for t in floats]
        for index, tensor in enumerate(floats):
            value = torch.from_numpy(numpy_helper.to_array(tensor).copy())
            if tensor.name in trainable:
                self.register_parameter(f"t{index}", torch.nn.Parameter(value))
            else:
                self.register_buffer(f"t{index}", value)
        self.global_pools = _global_average_pools(model)
        self.bn_momentum = 0.1

    def tensors(self) -> dict[str, torch.Tensor]:
        """Initializer name -> its current value (parameter or buffer)."""
        return {name: getattr(self, f"t{index}") for index, name in enumerate(self.names)}

    def forward(self, x: torch.Tensor | dict, logits: bool = False) -> torch.Tensor:
        """The graph's output for its one input `x` (or a dict of inputs by name); `logits` stops
        before a trailing Softmax (what a loss wants)."""
        feeds = x if isinstance(x, dict) else {self.input_names[0]: x}
        values = {**self.tensors(), **self.host, **feeds}
        for node in self.nodes:
            inputs = [values[name] if name else None for name in node.input]
            values[node.output[0]] = self._run(node, inputs, {a.name: helper.get_attribute_value(a)
                                                              for a in node.attribute})
        last = self.nodes[-1]
        return values[last.input[0] if logits and last.op_type == "Softmax" else self.output_name]

    def _run(self, node, inputs: list, attributes: dict) -> torch.Tensor:
        op = node.op_type
        if op == "Conv":
            x = F.pad(inputs[0], _torch_pads(attributes.get("pads", [0, 0, 0, 0])))
            return F.conv2d(x, inputs[1], inputs[2] if len(inputs) > 2 else None, attributes.get("strides", 1),
                            0, attributes.get("dilations", 1), attributes.get("group", 1))
        if op == "BatchNormalization":
            x, scale, shift, mean, variance = inputs
            return F.batch_norm(x, mean, variance, scale, shift, self.training, self.bn_momentum,
                                attributes.get("epsilon", 1e-5))
        if op == "Relu":
            return F.relu(inputs[0])
        if op == "Clip":
            return torch.clamp(inputs[0], inputs[1], inputs[2])
        if op in ("Add", "Sum"):
            return sum(inputs[1:], inputs[0])
        if op == "MaxPool":
            x = F.pad(inputs[0], _torch_pads(attributes.get("pads", [0, 0, 0, 0])), value=float("-inf"))
            return F.max_pool2d(x, attributes["kernel_shape"], attributes.get("strides", 1))
        if op == "GlobalAveragePool" or node.name in self.global_pools:
            return inputs[0].mean(dim=(2, 3), keepdim=True)
        if op == "AveragePool" and not any(attributes.get("pads", [0])):
            return F.avg_pool2d(inputs[0], attributes["kernel_shape"], attributes.get("strides", 1))
        if op == "Flatten" and attributes.get("axis", 1) == 1:
            return inputs[0].flatten(1)
        if op == "Reshape":
            x = inputs[0]
            return x.reshape(x.shape[0], *[x.shape[axis] if d == 0 else int(d) for axis, d in enumerate(inputs[1])
                                           if axis > 0])
        if op == "Gemm" and not attributes.get("transA", 0):
            weight = inputs[1].t() if attributes.get("transB", 0) else inputs[1]
            bias = inputs[2] * attributes.get("beta", 1.0) if len(inputs) > 2 else 0.0
            return attributes.get("alpha", 1.0) * inputs[0] @ weight + bias
        if op == "Softmax":
            return torch.softmax(inputs[0], dim=attributes.get("axis", -1))
        if op in ARITHMETIC:
            return ARITHMETIC[op](*inputs)
        if op == "Transpose":
            return inputs[0].permute(*attributes["perm"])
        if op == "LayerNormalization":
            x, scale, shift = inputs
            axis = attributes.get("axis", -1) % x.dim()
            return F.layer_norm(x, x.shape[axis:], scale, shift, attributes.get("epsilon", 1e-5))
        if op in ("Shape", "Gather", "Range", "Unsqueeze"):
            return self._indexing(op, inputs, attributes)
        raise NotImplementedError(f"node {node.name!r}: {op} with attributes {attributes} is not interpreted in "
                                  "torch; add it to bench/torch_graph.py to train this model")


    def _indexing(self, op: str, inputs: list, attributes: dict):
        """Shape arithmetic on host numpy values; Gather from a tensor and Range build device tensors."""
        device = next(iter(self.tensors().values())).device
        if op == "Shape":
            return np.array(inputs[0].shape, np.int64)
        if op == "Range":
            return torch.arange(*(int(v) for v in inputs), device=device)
        if op == "Unsqueeze":
            x = inputs[0]
            for axis in sorted(int(a) % (x.dim() + len(inputs[1])) for a in inputs[1]):
                x = x.unsqueeze(axis)
            return x
        data, indices = inputs
        axis = attributes.get("axis", 0)
        if isinstance(data, np.ndarray):
            return np.take(data, indices, axis)
        flat = torch.as_tensor(indices, device=device).reshape(-1)
        return data.index_select(axis, flat).reshape(*data.shape[:axis], *np.shape(indices), *data.shape[axis + 1:])


ARITHMETIC = {"Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "MatMul": torch.matmul, "Erf": torch.erf}


def _torch_pads(pads: list[int]) -> tuple[int, ...]:
    """ONNX [top, left, bottom, right] -> F.pad's (left, right, top, bottom)."""
    return (pads[1], pads[3], pads[0], pads[2])


def _global_average_pools(model: onnx.ModelProto) -> set[str]:
    """AveragePool nodes whose window is their whole input at the graph's own resolution."""
    shapes = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
              for info in onnx.shape_inference.infer_shapes(model).graph.value_info}
    result = set()
    for node in model.graph.node:
        if node.op_type == "AveragePool":
            kernel = next(list(a.ints) for a in node.attribute if a.name == "kernel_shape")
            pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [0])
            if shapes.get(node.input[0], [])[2:] == kernel and not any(pads):
                result.add(node.name)
    return result


def write_back(model: onnx.ModelProto, module: OnnxModule) -> onnx.ModelProto:
    """A copy of `model` whose initializers hold the module's current tensors."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    tensors = module.tensors()
    for tensor in [t for t in result.graph.initializer if t.name in tensors]:  # integer constants are unchanged
        value = tensors[tensor.name].detach().cpu().numpy()
        tensor.CopyFrom(numpy_helper.from_array(value.copy(), tensor.name))  # copy: contiguous, 0-d stays 0-d
    return result
