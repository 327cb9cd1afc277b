"""Pool window geometry per spatial dim (strides, dilations, pads, auto_pad, ceil_mode overhang),
worked out at compile time; the cpu and gpu pooling kernels both read it."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir.graph import Graph, Node

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True)
class Window:
    first: int  # input coordinate of the first tap inside the input
    taps: int  # taps inside the input
    divisor: int  # this dim's factor of the average's divisor


@dataclass(frozen=True)
class WindowDim:
    """One spatial dim of a sliding window (a pool, a convolution): input and output sizes, window
    shape and the padding before the input."""

    size_in: int
    size_out: int
    kernel: int
    stride: int
    dilation: int
    pad_begin: int


@dataclass(frozen=True)
class PoolDim(WindowDim):
    """One spatial dim of a pool: a window dim with the padding after the input too."""

    pad_end: int

    def windows(self, count_padding: bool) -> list[Window]:
        """Per output position; with count_padding the divisor counts taps in the padding but
        not past it (ceil_mode windows can overhang the end padding), as ONNX Runtime does."""
        result = []
        for position in range(self.size_out):
            start = position * self.stride - self.pad_begin
            low = max(0, ceil_div(-start, self.dilation))
            high = min(self.kernel, ceil_div(self.size_in - start, self.dilation))
            taps = max(0, high - low)
            padded = max(0, min(self.kernel, ceil_div(self.size_in + self.pad_end - start, self.dilation)))
            result.append(Window(start + low * self.dilation, taps, padded if count_padding else taps))
        return result

    def tap_ranges(self) -> list[tuple[int, int]]:
        """Per tap of the window: the output positions [low, high) for which it lies inside the input."""
        ranges = []
        for tap in range(self.kernel):
            shift = tap * self.dilation - self.pad_begin  # input coordinate = position * stride + shift
            low = max(0, ceil_div(-shift, self.stride))
            high = min(self.size_out, ceil_div(self.size_in - shift, self.stride))
            ranges.append((low, max(low, high)))
        return ranges


def pool_dims(graph: Graph, node: Node) -> list[PoolDim]:
    """The geometry of every spatial dim; output sizes come from shape inference."""
    size_in, size_out = graph.input_types(node)[0].shape[2:], node.outputs[0].shape[2:]
    spatial = len(size_in)
    kernel = node.attrs["kernel_shape"]
    strides = node.attrs.get("strides", [1] * spatial)
    dilations = node.attrs.get("dilations", [1] * spatial)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    pads = list(node.attrs.get("pads", [0] * 2 * spatial)) if auto_pad == "NOTSET" else [0] * 2 * spatial
    if auto_pad.startswith("SAME"):
        for i in range(spatial):
            total = max(0, (size_out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size_in[i])
            pads[i] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            pads[spatial + i] = total - pads[i]
    return [PoolDim(size_in[i], size_out[i], kernel[i], strides[i], dilations[i], pads[i], pads[spatial + i])
            for i in range(spatial)]


def pool_problem(graph: Graph, node: Node) -> str | None:
    """Why a MaxPool/AveragePool/LpPool node has no window geometry to compile, or None."""
    spatial = len(graph.input_types(node)[0].shape) - 2
    if spatial < 1:
        return f"{node.op_type} needs an input of rank >= 3"
    attrs = node.attrs
    if attrs.get("auto_pad", "NOTSET") not in AUTO_PADS:
        return f"{node.op_type} auto_pad={attrs['auto_pad']!r} is not one of {', '.join(AUTO_PADS)}"
    if node.op_type == "LpPool" and attrs.get("p", 2) < 1:
        return f"LpPool p={attrs['p']} is not compiled (p >= 1 only)"
    if attrs.get("storage_order", 0) not in (0, 1):
        return f"MaxPool storage_order={attrs['storage_order']} is not 0 (row major) or 1 (column major)"
    # attribute: (values per spatial dim, default value, smallest value)
    expected = {"kernel_shape": (1, None, 1), "strides": (1, 1, 1), "dilations": (1, 1, 1), "pads": (2, 0, 0)}
    for name, (per_dim, default, smallest) in expected.items():
        value = attrs.get(name, None if default is None else [default] * per_dim * spatial)
        if value is None or len(value) != per_dim * spatial:
            return f"{node.op_type} needs {name} with {per_dim * spatial} values for {spatial} spatial dims"
        if min(value) < smallest:
            return f"{node.op_type} {name}={value} has values below {smallest}"
    if any(window.taps == 0 for dim in pool_dims(graph, node) for window in dim.windows(False)):
        return (f"{node.op_type} output shape {node.outputs[0].shape} has windows that read no input element "
                "(onnx shape inference keeps ceil_mode windows that start past the input; ONNX Runtime drops them)")
    return None
