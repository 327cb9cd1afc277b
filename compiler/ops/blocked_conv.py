"""kiln::BlockedConv: a fused 2-D Conv over tensors in the blocked channel layout NCHWc.

The block-channels pass (compiler/passes/block_channels.py) builds it so that chains of convolutions
keep their activations as [N, C / c, H, W, c] (c = the CPU's vector lanes): the cpu kernel then loads
c output channels as one vector and stores them the same way, with nothing to transpose or stage.

Inputs: X, either blocked [N, C / c_in, H, W, c_in] or plain NCHW (a conv reading few channels, like a
stem, reads its image as is); W packed at compile time, [M / G, C / c_in, KH, KW, c_in, G] (a group of
G output channels holds G / c output blocks, so one item's weights are contiguous, see pack_weights;
c_in is 1 for a plain input); B [M] or absent; then the epilogue's operands, already blocked (a
residual) or broadcasting to the blocked output. Output: [N, M / c, OH, OW, c]. A depthwise conv
(group = C = M) reads a blocked input and its weights as [C / c, KH, KW, c] (pack_depthwise_weights).
Channel counts that are not whole blocks are padded (see `padded`): the pass gives the padded channels
zero weights and bias, so they never reach a real output channel.

Attributes: Conv's own (kernel_shape, strides, pads, dilations; group 1, or C for a depthwise conv),
`out_block` (c), `in_channels` (the input channels before padding, when they were padded; the kernel skips
the rest),
and FusedConv's `epilogue`, `activation` and `fused_nodes` (compiler/ops/fused_linear.py), whose
steps apply to the blocked output element by element.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ir.types import TensorType
from compiler.ops.fused_linear import epilogue_kernel, epilogue_types
from compiler.ops.registry import OpDef, lookup, register

CONV_ATTRIBUTES = ("kernel_shape", "strides", "pads", "dilations", "group")
BASES = {"BlockedConv": ("Conv", 3)}
"""As fused_linear.BASES: the base op and its inputs (X, W, B) before the epilogue's operands."""


def padded(channels: int, block: int) -> int:
    """`channels` rounded up to whole blocks: the channels a blocked tensor holds (24 takes 32 in blocks of 16)."""
    return -(-channels // block) * block


def pad_channels(value: np.ndarray, block: int, axis: int = 1) -> np.ndarray:
    """`value` with zeros appended along `axis` up to whole blocks."""
    widths = [(0, 0)] * value.ndim
    widths[axis] = (0, padded(value.shape[axis], block) - value.shape[axis])
    return np.pad(value, widths)


def to_blocked(value: np.ndarray, block: int) -> np.ndarray:
    """NCHW [N, C, H, W] -> NCHWc [N, ceil(C / block), H, W, block], the last block's missing channels zero."""
    value = pad_channels(value, block)
    n, c, *spatial = value.shape
    moved = value.reshape(n, c // block, block, *spatial).transpose(0, 1, *range(3, 3 + len(spatial)), 2)
    return np.ascontiguousarray(moved)


def from_blocked(value: np.ndarray) -> np.ndarray:
    """NCHWc -> NCHW (the inverse of to_blocked, padded channels included)."""
    n, blocks, *spatial, block = value.shape
    moved = value.transpose(0, 1, len(value.shape) - 1, *range(2, len(value.shape) - 1))
    return np.ascontiguousarray(moved).reshape(n, blocks * block, *spatial)


def pack_weights(weights: np.ndarray, in_block: int, group_channels: int) -> np.ndarray:
    """W [M, C, KH, KW] -> [M / G, C / c_in, KH, KW, c_in, G] for G = group_channels, c_in = in_block."""
    m, c, kh, kw = weights.shape
    grouped = weights.reshape(m // group_channels, group_channels, c // in_block, in_block, kh, kw)
    return np.ascontiguousarray(grouped.transpose(0, 2, 4, 5, 3, 1))


def pack_depthwise_weights(weights: np.ndarray, block: int) -> np.ndarray:
    """A depthwise conv's W [C, 1, KH, KW] -> [C / c, KH, KW, c]: each tap's c channels one vector."""
    c, _, kh, kw = weights.shape
    return np.ascontiguousarray(weights.reshape(c // block, block, kh, kw).transpose(0, 2, 3, 1))


def unpack_weights(packed: np.ndarray) -> np.ndarray:
    """The inverse of pack_weights (or of pack_depthwise_weights, for 4-D weights): W [M, C / group, KH, KW]."""
    if packed.ndim == 4:
        blocks, kh, kw, block = packed.shape
        return np.ascontiguousarray(packed.transpose(0, 3, 1, 2)).reshape(blocks * block, 1, kh, kw)
    groups, in_blocks, kh, kw, in_block, group_channels = packed.shape
    return np.ascontiguousarray(packed.transpose(0, 5, 1, 4, 2, 3)).reshape(
        groups * group_channels, in_blocks * in_block, kh, kw)


def base_conv(node: Node) -> Node:
    """The plain Conv the node computes before blocking its output and applying its epilogue."""
    attrs = {key: node.attrs[key] for key in CONV_ATTRIBUTES if key in node.attrs}
    return Node(node.name, "Conv", "", 11, attrs, 3, [None], list(node.output_names))


def _plain_input_type(x: TensorType) -> TensorType:
    if len(x.shape) == 4:
        return x
    n, blocks, h, w, block = x.shape
    return TensorType(x.dtype, (n, blocks * block, h, w))


def _plain_weights_type(w: TensorType) -> TensorType:
    if len(w.shape) == 4:
        blocks, kh, kw, block = w.shape
        return TensorType(w.dtype, (blocks * block, 1, kh, kw))
    groups, in_blocks, kh, kw, in_block, group_channels = w.shape
    return TensorType(w.dtype, (groups * group_channels, in_blocks * in_block, kh, kw))


def blocked_type(plain: TensorType, block: int) -> TensorType:
    n, c, h, w = plain.shape
    return TensorType(plain.dtype, (n, padded(c, block) // block, h, w, block))


def _base_output_type(node: Node, input_types: list) -> TensorType | None:
    x, w, b = input_types[:3]
    if x is None or w is None:
        return None
    plain = lookup("Conv").infer(base_conv(node), [_plain_input_type(x), _plain_weights_type(w), b], [None] * 3)[0]
    return None if plain is None else blocked_type(plain, node.attrs["out_block"])


def _infer(node: Node, input_types: list, input_values: list) -> list:
    base_type, extra_types = _base_output_type(node, input_types), input_types[3:]
    if base_type is None or any(t is None for t in extra_types):
        return [None]
    return [epilogue_types(node, base_type, extra_types)[-1]]


def _kernel(node: Node, input_types: list, present: list):
    base = base_conv(node)
    x_type, w_type, b_type = input_types[:3]
    conv = lookup("Conv").kernel(base, [_plain_input_type(x_type), _plain_weights_type(w_type), b_type],
                                 present[:3])
    epilogue = epilogue_kernel(node, _base_output_type(node, input_types), input_types[3:])

    def kernel(inputs: list) -> list:
        x, w, b, *extras = inputs
        plain_x = x if x.ndim == 4 else from_blocked(x)
        result = conv([plain_x, unpack_weights(w), b])[0]
        return [epilogue(to_blocked(result, node.attrs["out_block"]), extras)]

    return kernel


register(OpDef("BlockedConv", KILN_DOMAIN, "fused", _infer, _kernel))
