"""The AOT executor: one LLVM module holding every kernel plus the exported entry point.

    int kiln_run(const void *weights, void *workspace, void *const *inputs, void *const *outputs)

runs the whole plan in order (an inference is one native call). Each kernel is launched
through kiln_parallel_for (support/parallel.c) with its operand pointers in an array.
"""

from __future__ import annotations

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I32, I64, PTR, const_i64
from compiler.codegen.llvm.kernels.registry import KernelContext, TensorArg, kernel_for
from compiler.codegen.memory_plan import Location, MemoryPlan, tensor_bytes
from compiler.ir.graph import Graph, Value

ENTRY = "kiln_run"
LAYOUT = "kiln_layout"
VOID = ir.VoidType()
TASK_TYPE = ir.FunctionType(VOID, [PTR, I64, I64])


def _operand_pointer(builder: ir.IRBuilder, bases: dict, location: Location) -> ir.Value:
    if location.region in ("input", "output"):
        slot = builder.gep(bases[location.region], [const_i64(location.offset)], source_etype=PTR, inbounds=True)
        return builder.load(slot, typ=PTR)
    return builder.gep(bases[location.region], [const_i64(location.offset)], source_etype=ir.IntType(8), inbounds=True)


def _emit_task(module: ir.Module, graph: Graph, node, index: int) -> ir.Function:
    """The kernel of one node as an internal task function."""
    spec = kernel_for(node)
    function = ir.Function(module, TASK_TYPE, name=f"kiln_k{index}_{node.op_type.lower()}")
    function.linkage = "internal"
    args, begin, end = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    values = graph.input_values(node)
    pointers = []
    for slot in range(len(values) + len(node.outputs)):
        pointer = builder.gep(args, [const_i64(slot)], source_etype=PTR, inbounds=True)
        pointers.append(builder.load(pointer, typ=PTR, name=f"arg{slot}"))
    inputs = [None if v is None else TensorArg(pointers[i], graph.type_of(v)) for i, v in enumerate(values)]
    outputs = [TensorArg(pointers[len(values) + i], t) for i, t in enumerate(node.outputs)]
    spec.emit(KernelContext(builder, module, graph, node, inputs, outputs, begin, end))
    if not builder.block.is_terminated:
        builder.ret_void()
    return function


def layout_table(graph: Graph, plan: MemoryPlan) -> list[int]:
    """[weights bytes, workspace bytes, #inputs, #outputs, each input's bytes, each output's bytes]."""
    inputs = [tensor_bytes(graph.type_of(Value(name, 0))) for name in graph.inputs]
    outputs = [tensor_bytes(graph.type_of(value)) for _, value in graph.outputs]
    return [len(plan.weights), plan.workspace_bytes, len(inputs), len(outputs), *inputs, *outputs]


def _emit_layout(module: ir.Module, table: list[int]) -> None:
    """`const int64_t *kiln_layout(void)`: the sizes the code was built for, so a runtime can
    check a manifest against the library itself before handing it buffers."""
    array_type = ir.ArrayType(I64, len(table))
    data = ir.GlobalVariable(module, array_type, name="kiln_layout_table")
    data.global_constant = True
    data.linkage = "internal"
    data.initializer = ir.Constant(array_type, [const_i64(v) for v in table])
    function = ir.Function(module, ir.FunctionType(PTR, []), name=LAYOUT)
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    builder.ret(builder.bitcast(data, PTR))


def build_module(graph: Graph, plan: MemoryPlan) -> ir.Module:
    module = ir.Module(name="kiln_model")
    _emit_layout(module, layout_table(graph, plan))
    parallel_for = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64]), name="kiln_parallel_for")
    memcpy = module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
    entry = ir.Function(module, ir.FunctionType(I32, [PTR, PTR, PTR, PTR]), name=ENTRY)
    weights, workspace, inputs, outputs = entry.args
    bases = {"weights": weights, "workspace": workspace, "input": inputs, "output": outputs}
    builder = ir.IRBuilder(entry.append_basic_block("entry"))
    slots = max([len(graph.input_values(s.node)) + len(s.node.outputs) for s in plan.steps if s.node] + [1])
    operand_array = builder.alloca(ir.ArrayType(PTR, slots), name="operands")
    for index, step in enumerate(plan.steps):
        if step.node is None:
            source = _operand_pointer(builder, bases, plan.locations[step.copy_source])
            target = _operand_pointer(builder, bases, Location("output", step.output_index))
            size = tensor_bytes(graph.type_of(step.copy_source))
            builder.call(memcpy, [target, source, const_i64(size), ir.Constant(ir.IntType(1), 0)])
            continue
        node = step.node
        values = graph.input_values(node) + [Value(node.name, i) for i in range(len(node.outputs))]
        for slot, value in enumerate(values):
            pointer = ir.Constant(PTR, None) if value is None else _operand_pointer(builder, bases, plan.locations[value])
            builder.store(pointer, builder.gep(operand_array, [const_i64(0), const_i64(slot)], inbounds=True))
        task = _emit_task(module, graph, node, index)
        work = kernel_for(node).work_items(graph, node)
        builder.call(parallel_for, [task, operand_array, const_i64(work)])
    builder.ret(ir.Constant(I32, 0))
    return module
