"""kiln::FusedElementwise: a whole elementwise expression per element, in one broadcasting loop.

Each step is emitted exactly as its own elementwise kernel would compute it (elementwise.apply_op,
rounding float16 results after every step), so fusing changes no bit of the result; only the
intermediate tensors and their memory round trips disappear.
"""

from __future__ import annotations

from llvmlite import ir

from compiler.codegen.broadcast_dims import same_shape_input
from compiler.codegen.llvm.kernels.broadcast import batch_row_items, emit_broadcast_loop, row_count
from compiler.codegen.llvm.kernels.elementwise import OPS, apply_op, op_problem
from compiler.codegen.llvm.kernels.narrow_types import cast
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.fused_elementwise import OP_TYPE, Step, first_step_problem, steps_of, value_types

CAST_FLOATS = frozenset({"float16", "float32", "float64"})
"""Cast steps the kernel computes: between these float types."""


def step_problem(step: Node, dtypes: list, out_dtype: str) -> str | None:
    """Why one step (input dtypes `dtypes`, None where absent) cannot be computed in the loop; None when it can."""
    if step.op_type == "Cast":
        if dtypes[0] in CAST_FLOATS and out_dtype in CAST_FLOATS:
            return None
        return f"Cast from {dtypes[0]} to {out_dtype} is not a cast between {', '.join(sorted(CAST_FLOATS))}"
    if step.op_type not in OPS:
        return f"{step.op_type} is not an elementwise op of the cpu target"
    return op_problem(step, dtypes)


def _dtypes(types: list) -> list:
    return [None if t is None else t.dtype for t in types]


def steps_problem(steps: list[Step], dtypes: list) -> str | None:
    """Why one of `steps` cannot be computed in the loop ("step i (op): ..."); None when all can."""
    return first_step_problem(steps, dtypes, step_problem)


def emit_steps(builder: ir.IRBuilder, steps: list[Step], dtypes: list, values: list) -> ir.Value:
    """Compute `steps` on one element: `values` holds the loaded operands and grows by each step's
    result; `dtypes` numbers every value as in steps_problem. Returns the last result."""
    for step in steps:
        operands = [None if ref is None else values[ref] for ref in step.operands]
        stored = [None if ref is None else dtypes[ref] for ref in step.operands]
        out_dtype = dtypes[len(values)]
        if step.node.op_type == "Cast":
            values.append(cast(builder, operands[0], stored[0], out_dtype))
        else:
            values.append(apply_op(builder, step.node, operands, stored, out_dtype))
    return values[-1]


def _check(graph: Graph, node: Node) -> str | None:
    problem = steps_problem(steps_of(node), _dtypes(value_types(node, graph.input_types(node))))
    return f"{node.qualified_op} {problem}" if problem else None


def _work_items(graph: Graph, node: Node) -> int:
    return row_count(node.outputs[0].shape, [t.shape for t in graph.input_types(node)])


def _emit(ctx: KernelContext) -> None:
    node = ctx.node
    steps = steps_of(node)
    dtypes = _dtypes(value_types(node, [arg.type for arg in ctx.inputs]))

    emit_broadcast_loop(ctx, ctx.inputs, ctx.outputs[0],
                        lambda builder, loaded: emit_steps(builder, steps, dtypes, list(loaded)))


register_kernel(KernelSpec((f"{KILN_DOMAIN}::{OP_TYPE}",), _check, _work_items, _emit,
                           in_place=same_shape_input, batch_items=lambda graph, node, bound: batch_row_items(
                               node.outputs[0].shape, [t.shape for t in graph.input_types(node)], bound)))
