"""Fused elementwise bodies: the steps of a kiln::FusedElementwise node, or of a FusedConv/Gemm/MatMul
epilogue, as OpenCL C statements, each step's expression from the one expression renderer.

Each step's value is kept in its compute type after a round trip through its storage type
(integers wrap, half rounds), so a fused body computes what the unfused kernels stored, bit for
bit; only the intermediate tensors disappear. A Cast step converts as the Cast kernel does.
"""

from __future__ import annotations

from compiler.codegen.opencl.dialect import STORAGE_TYPES, OpenCLDialect, compute_dtype
from compiler.codegen.opencl.expressions import OPS, op_problem, render, result_dtype
from compiler.ir.graph import KILN_DOMAIN, Graph, Node
from compiler.ops.fused_elementwise import OP_TYPE, Step, first_step_problem, value_types
from compiler.ops.fused_linear import BASES, epilogue_types


def step_problem(step: Node, dtypes: list, out_dtype: str) -> str | None:
    """Why one step (operand storage dtypes `dtypes`, None where absent) is not rendered; None when it is."""
    if out_dtype not in STORAGE_TYPES:
        return f"{step.op_type} gives {out_dtype}, which the gpu target does not compute"
    if step.op_type == "Cast":
        return None if dtypes[0] in STORAGE_TYPES else f"Cast from {dtypes[0]} is not compiled by the gpu target"
    if step.op_type not in OPS:
        return f"{step.op_type} is not an elementwise op of the gpu target"
    return op_problem(step, dtypes)


def steps_problem(node: Node, steps: list[Step], dtypes: list) -> str | None:
    """The first step of `node` that is not rendered, and why; `dtypes` are the storage dtypes of every
    value the steps number (their operands first, then each step's result)."""
    problem = first_step_problem(steps, dtypes, step_problem)
    return None if problem is None else f"{node.qualified_op} {problem}"


def render_steps(dialect: OpenCLDialect, steps: list[Step], names: list, dtypes: list,
                 prefix: str) -> tuple[list[str], str]:
    """Statements declaring `<prefix><k>`, step k's value, over operand identifiers `names` (their
    storage dtypes the first entries of `dtypes`, the steps' results after them); returns them and
    the identifier of the last step's value."""
    names, lines = list(names), []
    for index, step in enumerate(steps):
        operands = [None if ref is None else names[ref] for ref in step.operands]
        stored = [None if ref is None else dtypes[ref] for ref in step.operands]
        out = dtypes[len(names)]
        if step.node.op_type == "Cast":
            expression = dialect.convert(operands[0], compute_dtype(stored[0]), out)
        else:
            produced = compute_dtype(result_dtype(step.node, [d for d in stored if d is not None]))
            expression = dialect.convert(render(dialect, step.node, operands, stored), produced, out)
        name = f"{prefix}{index}"
        value = dialect.convert(expression, out, compute_dtype(out))
        lines.append(f"const {dialect.compute_type(out)} {name} = {value};")
        names.append(name)
    return lines, names[-1]


def inner_types(graph: Graph, node: Node) -> list:
    """Types of the values a fused node computes inside (none for other nodes): what a kernel must hold."""
    if node.domain != KILN_DOMAIN:
        return []
    if node.op_type == OP_TYPE:
        return value_types(node, graph.input_types(node))[node.num_inputs:]
    if node.op_type in BASES:
        extras = graph.input_types(node)[BASES[node.op_type][1]:]
        return epilogue_types(node, node.outputs[0], extras)[1 + len(extras):]
    return []
