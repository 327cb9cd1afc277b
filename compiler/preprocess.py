"""Input preprocessing compiled into the model (OpenVINO's PrePostProcessor, ahead of time).

`compile(model, target, preprocess={"image": Preprocess(element_type="uint8", layout="NHWC",
reverse_channels=True, resize_from=(480, 640), mean=(123.7, 116.3, 103.5), scale=(58.4, 57.1, 57.4))})`
makes the input take what a camera or decoder gives (uint8, NHWC, BGR, any size) and puts the steps
the model expects in front of it as ordinary graph nodes, in OpenVINO's order: convert the element
type, the layout (NHWC -> NCHW), the channel order, resize (bilinear) to the model's spatial size,
subtract `mean`, divide by `scale`. The passes then fuse them into the model's first kernels; no
step runs in numpy at inference. CLI: --input-type, --layout, --reverse-input-channels, --resize,
--mean-values, --scale-values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.types import TensorType
from compiler.ops.onnx_bridge import dtype_to_onnx
from compiler.passes.infer_types import infer_types

ELEMENT_TYPES = ("uint8", "int8", "float16", "float32")
LAYOUTS = ("NCHW", "NHWC")


class PreprocessError(ValueError):
    """A preprocessing request does not fit the model's input."""


@dataclass(frozen=True)
class Preprocess:
    """What the caller gives for one input; None keeps the model's own for that step."""

    element_type: str | None = None
    layout: str | None = None
    reverse_channels: bool = False
    resize_from: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None


def _per_channel(name: str, what: str, values, channels: int, dtype: str) -> np.ndarray:
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size not in (1, channels):
        raise PreprocessError(f"input {name!r}: {what} has {values.size} values; the model's input has {channels} "
                              "channels: give one value or one per channel")
    return np.broadcast_to(values, (channels,)).reshape(1, channels, 1, 1).astype(dtype)


def _check(name: str, declared, steps: Preprocess) -> None:
    if not isinstance(declared, TensorType) or not declared.is_static or not declared.dtype.startswith("float"):
        raise PreprocessError(f"input {name!r} is {declared}: preprocessing needs a float input of static shape "
                              "(compile with --shape first)")
    if steps.element_type not in (None, *ELEMENT_TYPES):
        raise PreprocessError(f"input {name!r}: element type {steps.element_type!r}; choose one of {ELEMENT_TYPES}")
    if steps.layout not in (None, *LAYOUTS):
        raise PreprocessError(f"input {name!r}: layout {steps.layout!r}; choose one of {LAYOUTS}")
    image_steps = steps.layout or steps.reverse_channels or steps.resize_from or steps.mean is not None \
        or steps.scale is not None
    if image_steps and len(declared.shape) != 4:
        raise PreprocessError(f"input {name!r} has shape {list(declared.shape)}: layout, channel, resize, mean and "
                              "scale steps need an NCHW image input of rank 4")


def _chain(graph: Graph, name: str, declared: TensorType, steps: Preprocess) -> tuple[TensorType, Value]:
    """The caller-facing type of input `name`, and the value the model's nodes read instead."""
    n, channels, height, width = declared.shape if len(declared.shape) == 4 else (None,) * 4
    given_h, given_w = steps.resize_from or (height, width)
    if steps.layout == "NHWC":
        shape = (n, given_h, given_w, channels)
    else:
        shape = declared.shape if len(declared.shape) != 4 else (n, channels, given_h, given_w)
    value = Value(name, 0)

    def add(op_type, inputs, version, **attrs):
        return Value(graph.add_node(op_type, inputs, attrs, version=version, name=f"{name}.{op_type.lower()}").name)

    if steps.element_type and steps.element_type != declared.dtype:
        value = add("Cast", [value], 19, to=dtype_to_onnx(declared.dtype))
    if steps.layout == "NHWC":
        value = add("Transpose", [value], 21, perm=[0, 3, 1, 2])
    if steps.reverse_channels:
        value = add("Gather", [value, graph.add_constant(np.arange(channels - 1, -1, -1, dtype=np.int64))], 13,
                    axis=1)
    if steps.resize_from and tuple(steps.resize_from) != (height, width):
        sizes = graph.add_constant(np.array(declared.shape, np.int64))
        value = add("Resize", [value, None, None, sizes], 19, mode="linear",
                    coordinate_transformation_mode="half_pixel")
    if steps.mean is not None:
        value = add("Sub", [value, graph.add_constant(_per_channel(name, "mean", steps.mean, channels,
                                                                   declared.dtype))], 14)
    if steps.scale is not None:
        value = add("Div", [value, graph.add_constant(_per_channel(name, "scale", steps.scale, channels,
                                                                   declared.dtype))], 14)
    return TensorType(steps.element_type or declared.dtype, tuple(shape)), value


def apply_preprocessing(graph: Graph, preprocess: Mapping[str, Preprocess] | None) -> Graph:
    """Put each input's preprocessing in front of the nodes that read it; works on `graph` in place."""
    for name, steps in (preprocess or {}).items():
        if name not in graph.inputs:
            raise PreprocessError(f"preprocessing names input {name!r}, but the model's inputs are {graph.inputs}")
        declared = graph.node(name).outputs[0]
        _check(name, declared, steps)
        readers = graph.uses(Value(name, 0))
        outputs = [index for index, (_, value) in enumerate(graph.outputs) if value == Value(name, 0)]
        given, value = _chain(graph, name, declared, steps)
        for consumer, index in readers:
            graph.set_input(consumer, index, value)
        for index in outputs:
            graph.outputs[index] = (graph.outputs[index][0], value)
        graph.node(name).outputs[0] = given
    if preprocess:
        infer_types(graph)
    return graph
