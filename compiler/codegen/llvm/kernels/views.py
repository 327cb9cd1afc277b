"""View ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity) as kernels.

The memory plan makes a view share its input's storage, so these kernels only run when a
view's result must land in a separate buffer (a graph output): a plain byte copy.
"""

from __future__ import annotations

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I64, PTR, const_i64
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.codegen.memory_plan import VIEW_OPS, tensor_bytes


def _emit(ctx: KernelContext) -> None:
    memcpy = ctx.module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
    size = tensor_bytes(ctx.outputs[0].type)
    ctx.builder.call(memcpy, [ctx.outputs[0].ptr, ctx.inputs[0].ptr, const_i64(size), ir.Constant(ir.IntType(1), 0)])


register_kernel(KernelSpec(tuple(sorted(VIEW_OPS)), lambda graph, node: None, lambda graph, node: 1, _emit))
