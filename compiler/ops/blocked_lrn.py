"""kiln::BlockedLRN: LRN over a tensor in the blocked channel layout NCHWc.

The block-channels pass (compiler/passes/block_channels.py) builds it for an LRN between blocked convs
(Inception-v1, AlexNet), so its input and output stay [N, C / c, H, W, c] instead of being transposed to
NCHW and back around it. LRN's window runs along the channels, which the blocked layout splits between
a pixel's vector and its neighbouring blocks' vectors; C must be whole blocks (a padded channel would add
its square to its neighbours' windows). Attributes: LRN's own (size, alpha, beta, bias).
"""

from __future__ import annotations

from compiler.ir.graph import KILN_DOMAIN, Node
from compiler.ir.types import TensorType
from compiler.ops.blocked_conv import from_blocked, to_blocked
from compiler.ops.registry import OpDef, lookup, register

LRN_ATTRIBUTES = ("size", "alpha", "beta", "bias")


def base_lrn(node: Node) -> Node:
    """The plain LRN the node computes over the unblocked input."""
    attrs = {key: node.attrs[key] for key in LRN_ATTRIBUTES if key in node.attrs}
    return Node(node.name, "LRN", "", 13, attrs, 1, [None], list(node.output_names))


def _infer(node: Node, input_types: list, input_values: list) -> list:
    x = input_types[0]
    return [x if x is not None and len(x.shape) == 5 else None]


def _kernel(node: Node, input_types: list, present: list):
    n, blocks, h, w, block = input_types[0].shape
    lrn = lookup("LRN").kernel(base_lrn(node), [TensorType(input_types[0].dtype, (n, blocks * block, h, w))],
                               present)

    def kernel(inputs: list) -> list:
        return [to_blocked(lrn([from_blocked(inputs[0])])[0], block)]

    return kernel


register(OpDef("BlockedLRN", KILN_DOMAIN, "nn", _infer, _kernel))
