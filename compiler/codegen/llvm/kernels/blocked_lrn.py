"""kiln::BlockedLRN (compiler/ops/blocked_lrn.py): LRN over [N, C / c, H, W, c], one pixel's c channels a vector.

A work item is one row of one channel block of one image. Each pixel loads its vector and the same pixel's
vectors in the blocks before and after it (zeros past the first and last block), squares them, and sums
the window's shifted copies: the square of channel i + d is lane i + d of the three vectors laid end to
end, one shuffle per window offset d. So the window costs a few shuffles and adds per c channels, where
the plain kernel swept the image once per window channel, and the input needs no transpose to NCHW and
back (Inception-v1: 1.8 ms of transposes and LRN at 1 thread became 0.47 ms, the square roots of lrn_scaled included).
"""

from __future__ import annotations

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import F32, I32, const_i64, load, store
from compiler.codegen.llvm.kernels.gemm_microkernel import load_vector, store_vector
from compiler.codegen.llvm.kernels.linear_algebra import linear, rolled_range, stack_buffer, unravel
from compiler.codegen.llvm.kernels.normalization import lrn_scaled
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, batch_major, register_kernel
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.nn import lrn_window


def _check(graph: Graph, node: Node) -> str | None:
    x = graph.input_types(node)[0]
    if x.dtype != "float32" or len(x.shape) != 5:
        return f"{node.qualified_op} takes a blocked float32 tensor [N, C / c, H, W, c], not {x.dtype} {list(x.shape)}"
    if node.attrs.get("size", 0) < 1 or max(lrn_window(node.attrs["size"])) > x.shape[-1]:
        return (f"{node.qualified_op} size={node.attrs.get('size')} must be 1 to {2 * x.shape[-1] + 1}: "
                "its window may reach one block on either side")
    return None


def _work_items(graph: Graph, node: Node) -> int:
    n, blocks, h, _, _ = graph.input_types(node)[0].shape
    return n * blocks * h


def _shifted(b: ir.IRBuilder, low: ir.Value, high: ir.Value, first: int) -> ir.Value:
    """Lanes first .. first + lanes - 1 of the vectors `low` and `high` laid end to end."""
    lanes = low.type.count
    return b.shuffle_vector(low, high, ir.Constant(ir.VectorType(I32, lanes), list(range(first, first + lanes))))


def _emit(ctx: KernelContext) -> None:
    b, x, y, attrs = ctx.builder, ctx.inputs[0], ctx.outputs[0], ctx.node.attrs
    n, blocks, h, w, lanes = x.shape
    size = attrs["size"]
    before, after = lrn_window(size)
    vector_type = ir.VectorType(F32, lanes)
    zero = ir.Constant(vector_type, None)
    block_stride = h * w * lanes
    bases = stack_buffer(b, x.dtype, w * lanes)  # a row's bias + alpha / size * window sums
    with rolled_range(b, ctx.begin, ctx.end, name="item") as item:
        image, block, row = unravel(b, item, (n, blocks, h))
        start = linear(b, [image, block, row], [blocks * block_stride, block_stride, w * lanes])
        has_before = b.icmp_signed(">", block, const_i64(0))
        has_after = b.icmp_signed("<", block, const_i64(blocks - 1))
        before_start = b.select(has_before, b.sub(start, const_i64(block_stride)), start)
        after_start = b.select(has_after, b.add(start, const_i64(block_stride)), start)
        with rolled_range(b, 0, w, name="column") as column:
            offset = b.mul(column, const_i64(lanes))
            value = load_vector(b, x.ptr, x.dtype, b.add(start, offset), lanes)
            neighbours = [b.select(present, load_vector(b, x.ptr, x.dtype, b.add(begin, offset), lanes), zero)
                          for present, begin in ((has_before, before_start), (has_after, after_start))]
            squares_before, square, squares_after = (b.fmul(v, v) for v in (neighbours[0], value, neighbours[1]))
            total = square
            for d in range(-before, after + 1):
                if d:
                    total = b.fadd(total, _shifted(b, squares_before, square, lanes + d) if d < 0 else
                                   _shifted(b, square, squares_after, d))
            base = b.fadd(ir.Constant(vector_type, [attrs.get("bias", 1.0)] * lanes),
                          b.fmul(ir.Constant(vector_type, [attrs.get("alpha", 1e-4) / size] * lanes), total))
            store_vector(b, base, bases, x.dtype, offset)
        with rolled_range(b, 0, w * lanes, name="element") as element:  # (scalar code LLVM vectorizes:
            at = b.add(start, element)  # vector_math's exp and log are written for it)
            scaled = lrn_scaled(b, load(b, x.ptr, x.dtype, at), load(b, bases, x.dtype, element),
                                attrs.get("beta", 0.75))
            store(b, scaled, y.ptr, y.dtype, at)


register_kernel(KernelSpec((f"{KILN_DOMAIN}::BlockedLRN",), _check, _work_items, _emit,
                           batch_items=lambda graph, node, bound: batch_major(_work_items(graph, node), bound)))
