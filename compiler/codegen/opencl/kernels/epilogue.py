"""The epilogue of a kiln::FusedConv/FusedGemm/FusedMatMul (compiler/ops/fused_linear.py) in the GEMM
kernel: applied to each output element while it is in a register, before its one store.

The base op's value is rounded through the output's storage type, then the extra operands (a
bias, a residual) are read at the element's flat index `at` (through the output coordinates
where they broadcast), and the steps render as a fused elementwise body (steps.py).
"""

from __future__ import annotations

import math

from compiler.codegen.broadcast_dims import broadcast_strides, coalesce
from compiler.codegen.opencl.dialect import compute_dtype
from compiler.codegen.opencl.kernels.registry import GpuContext, Tensor
from compiler.codegen.opencl.steps import render_steps
from compiler.ops.fused_linear import BASES, epilogue_steps, epilogue_types


def _offset(out_dims: list[int], dims: list[int]) -> str:
    """Where an operand of coalesced `dims` is read for output element `at` of coalesced `out_dims`."""
    if dims == out_dims:
        return "at"
    terms = []
    for axis, stride in enumerate(broadcast_strides(dims)):
        if stride:
            inner = math.prod(out_dims[axis + 1:])
            coordinate = f"(at / {inner})" if inner > 1 else "at"
            coordinate = f"({coordinate} % {out_dims[axis]})" if axis else coordinate
            terms.append(coordinate if stride == 1 else f"{coordinate} * {stride}")
    return " + ".join(terms) or "0"


def epilogue(ctx: GpuContext, value: str) -> tuple[list[Tensor], list[str], str]:
    """(the extra parameters, the statements, the epilogue's result) for base value `value`."""
    node, d = ctx.node, ctx.dialect
    y = ctx.output(0, "y")
    count = BASES[node.op_type][1]
    extras = [ctx.input(index, f"e{index}") for index in range(count, node.num_inputs)]
    dtypes = [t.dtype for t in epilogue_types(node, y.type, [t.type for t in extras])]
    compute = compute_dtype(y.dtype)
    stored = d.convert(d.convert(value, compute, y.dtype), y.dtype, compute)
    lines = [f"const {d.compute_type(y.dtype)} ep_base = {stored};"]
    names = ["ep_base"]
    out_dims, in_dims = coalesce(y.shape, [tensor.shape for tensor in extras])
    for tensor, dims in zip(extras, in_dims):
        names.append(f"ep_{tensor.name}")
        lines.append(f"const {d.compute_type(tensor.dtype)} {names[-1]} = "
                     f"{d.load(tensor.name, _offset(out_dims, dims), tensor.dtype)};")
    steps, result = render_steps(d, epilogue_steps(node), names, dtypes, "ep")
    return extras, lines + steps, result
