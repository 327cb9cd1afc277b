"""ConvTranspose geometry every target shares: the attribute checks and the leading pads.

Output o along a spatial dim reads input i through kernel tap k when
o + pad_begin = i * stride + k * dilation.
"""

from __future__ import annotations

from compiler.ir.graph import Graph, Node
from compiler.ops.pool_geometry import AUTO_PADS, WindowDim


def _leading_pads(node: Node, dims_in, kernel, out_size, strides, dilations) -> list[int]:
    """Explicit pads, or for SAME_* auto_pad the split of the total padding (onnx.reference's and
    ONNX Runtime's: SAME_UPPER puts the smaller half first)."""
    rank = len(dims_in)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if "pads" in node.attrs or auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return list(node.attrs.get("pads", [0] * 2 * rank)[:rank])
    extra = node.attrs.get("output_padding", [0] * rank)
    totals = [s * (i - 1) + e + (k - 1) * d + 1 - o
              for i, k, o, s, d, e in zip(dims_in, kernel, out_size, strides, dilations, extra)]
    return [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals]


def spatial_dims(graph: Graph, node: Node, kind: type[WindowDim] = WindowDim) -> list:
    """Per spatial dim, a `kind` (WindowDim or a subclass adding how a kernel walks it)."""
    x_type, w_type = graph.input_types(node)[:2]
    size_in, kernel, size_out = x_type.shape[2:], w_type.shape[2:], node.outputs[0].shape[2:]
    rank = len(size_in)
    strides = node.attrs.get("strides", [1] * rank)
    dilations = node.attrs.get("dilations", [1] * rank)
    pads = _leading_pads(node, size_in, kernel, size_out, strides, dilations)
    return [kind(*values) for values in zip(size_in, size_out, kernel, strides, dilations, pads)]


def conv_transpose_problem(graph: Graph, node: Node) -> str | None:
    """Why a ConvTranspose node's shapes and attributes do not fit together, or None."""
    types = [t for t in graph.input_types(node) if t is not None]
    x_shape, w_shape = types[0].shape, types[1].shape
    rank, attrs = len(x_shape) - 2, node.attrs
    if rank < 1 or len(w_shape) != rank + 2:
        return f"ConvTranspose needs input and weight of one rank >= 3, not {x_shape} and {w_shape}"
    group = attrs.get("group", 1)
    if group < 1 or x_shape[1] % group or w_shape[0] != x_shape[1]:
        return f"ConvTranspose group={group} does not fit input channels {x_shape[1]} and weight {w_shape}"
    if attrs.get("auto_pad", "NOTSET") not in AUTO_PADS:
        return f"ConvTranspose auto_pad={attrs['auto_pad']!r} is not one of {', '.join(AUTO_PADS)}"
    if list(attrs.get("kernel_shape", w_shape[2:])) != list(w_shape[2:]):
        return f"ConvTranspose kernel_shape={attrs['kernel_shape']} differs from the weight's {w_shape[2:]}"
    for name in ("strides", "dilations"):
        if len(attrs.get(name, [1] * rank)) != rank or min(attrs.get(name, [1])) < 1:
            return f"ConvTranspose {name}={attrs[name]} needs {rank} values >= 1"
    if len(attrs.get("pads", [0] * 2 * rank)) != 2 * rank:
        return f"ConvTranspose pads={attrs['pads']} needs {2 * rank} values"
    return None
