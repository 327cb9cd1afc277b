"""The AOT executor: one LLVM module holding every kernel plus the exported entry points.

    int kiln_run(const void *weights, void *workspace, void *const *inputs, void *const *outputs)

runs the whole plan in order (an inference is one native call). Each kernel is launched
through kiln_parallel_for (support/parallel.c) with its operand pointers in an array.

    int kiln_run_profiled(..., int64_t *nanoseconds)

does the same and, when `nanoseconds` is not NULL, stores each kernel's wall time (read with
kiln_clock_ns, support/profile.c) in nanoseconds[k], k in the order of `kernel_table`.
kiln_run is kiln_run_profiled with NULL: one predictable branch per kernel, no clock reads.

    int kiln_precompute(void *weights)

computes the plan's precomputed values (memory_plan.precomputable) into the weights buffer, after
the weights blob; a runtime calls it once, after loading the weights and before the first kiln_run.

    int kiln_run_batch(..., int64_t *nanoseconds, int64_t batch)

exists in dynamic-batch artifacts (compiler/dynamic_batch.py), compiled at the batch's upper bound:
it computes the first `batch` entries only. Kernels whose items walk the batch outermost launch
the items of those entries (KernelSpec.batch_items), the others all of theirs, and output copies
move those entries; kiln_run_profiled is kiln_run_batch at the bound.

    int kiln_run_extent(..., int64_t *nanoseconds, int64_t batch, const int64_t *extents)

replaces it in dynamic-extent artifacts (compiler/dynamic_extent.py), compiled at every dynamic dim's
bound: `extents` holds each dim's size in the call, which kernels read (KernelContext.extents) and row
launches are cut to (codegen/llvm/extent_launch.py); kiln_run_profiled is it at the bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from compiler.codegen.llvm.extent_launch import emit_block_filter, emit_trampoline, load_extents, row_runs
from compiler.codegen.llvm.extent_marks import conv_blocks
from compiler.codegen.llvm.irhelpers import I32, I64, PTR, const_i64
from compiler.codegen.llvm.kernels.registry import EXTENT_IMAGE, KernelContext, TensorArg, kernel_for
from compiler.codegen.kernel_table import node_entry
from compiler.codegen.memory_plan import Location, MemoryPlan, tensor_bytes
from compiler.extent_types import Extent
from compiler.ir.graph import Graph, Value
from compiler.progress import current

ENTRY = "kiln_run"
PROFILED_ENTRY = "kiln_run_profiled"
PRECOMPUTE = "kiln_precompute"
BATCH_ENTRY = "kiln_run_batch"
EXTENT_ENTRY = "kiln_run_extent"
LAYOUT = "kiln_layout"
VOID = ir.VoidType()
TASK_TYPE = ir.FunctionType(VOID, [PTR, I64, I64])


def _operand_pointer(builder: ir.IRBuilder, bases: dict, location: Location) -> ir.Value:
    if location.region in ("input", "output"):
        slot = builder.gep(bases[location.region], [const_i64(location.offset)], source_etype=PTR, inbounds=True)
        return builder.load(slot, typ=PTR)
    return builder.gep(bases[location.region], [const_i64(location.offset)], source_etype=ir.IntType(8), inbounds=True)


def _task_name(node, index: int) -> str:
    return f"kiln_k{index}_{node.op_type.lower()}"


def kernel_table(graph: Graph, plan: MemoryPlan) -> list[dict]:
    """The kernels kiln_run launches, in order (profile slot k is entry k): task symbol, op, the
    names of the original graph nodes it computes (a fused node lists them in its `fused_nodes`
    attribute, e.g. kiln::FusedElementwise; any other node is itself) and its operand shapes."""
    return [node_entry(graph, step.node, _task_name(step.node, index))
            for index, step in enumerate(plan.steps) if step.node is not None and not step.precompute]



def _emit_task(module: ir.Module, graph: Graph, node, index: int, in_place: int | None,
               extent_slot: int | None = None, dims: int = 0) -> ir.Function:
    """The kernel of one node as an internal task function. When the plan puts its output over
    input `in_place`, the kernel reads that input through the output's pointer: LLVM then sees
    one base address and vectorizes without overlap checks. With `extent_slot`, the operand array
    holds there the array of the `dims` dynamic dims' sizes, which the kernel sees as ctx.extents."""
    spec = kernel_for(node)
    function = ir.Function(module, TASK_TYPE, name=_task_name(node, index))
    function.linkage = "internal"
    args, begin, end = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    values = graph.input_values(node)
    pointers = []
    for slot in range(len(values) + len(node.outputs)):
        pointer = builder.gep(args, [const_i64(slot)], source_etype=PTR, inbounds=True)
        pointers.append(builder.load(pointer, typ=PTR, name=f"arg{slot}"))
    if in_place is not None:
        pointers[in_place] = pointers[len(values)]
    inputs = [None if v is None else TensorArg(pointers[i], graph.type_of(v)) for i, v in enumerate(values)]
    outputs = [TensorArg(pointers[len(values) + i], t) for i, t in enumerate(node.outputs)]
    extents = None if extent_slot is None else load_extents(builder, args, extent_slot, dims)
    spec.emit(KernelContext(builder, module, graph, node, inputs, outputs, begin, end, extents))
    if not builder.block.is_terminated:
        builder.ret_void()
    return function


def layout_table(graph: Graph, plan: MemoryPlan) -> list[int]:
    """[weights bytes, workspace bytes, #inputs, #outputs, each input's bytes, each output's bytes,
    precomputed offset, precomputed bytes]."""
    inputs = [tensor_bytes(graph.type_of(Value(name, 0))) for name in graph.inputs]
    outputs = [tensor_bytes(graph.type_of(value)) for _, value in graph.outputs]
    return [len(plan.weights), plan.workspace_bytes, len(inputs), len(outputs), *inputs, *outputs,
            plan.precomputed_offset, plan.precomputed_bytes]


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


class _Launcher:
    """Emits kernel launches through kiln_parallel_for; with a `profile` pointer (kiln_run_profiled),
    launch k stores its wall time in profile[k] when that pointer is not NULL."""

    def __init__(self, module: ir.Module, builder: ir.IRBuilder, profile: ir.Value | None):
        self.parallel_for = module.globals.get("kiln_parallel_for") or ir.Function(
            module, ir.FunctionType(VOID, [PTR, PTR, I64]), name="kiln_parallel_for")
        self.clock = module.globals.get("kiln_clock_ns") or ir.Function(module, ir.FunctionType(I64, []),
                                                                         name="kiln_clock_ns")
        self.profile = profile
        if profile is not None:
            self.enabled = builder.icmp_unsigned("!=", profile, ir.Constant(PTR, None), name="profiling")
        self.launched = 0

    def launch(self, builder: ir.IRBuilder, task: ir.Function, operands: ir.Value, work: ir.Value) -> None:
        call_args = [task, operands, work]
        if self.profile is None:
            builder.call(self.parallel_for, call_args)
            return
        with builder.if_else(self.enabled, likely=False) as (timed, plain):
            with timed:
                start = builder.call(self.clock, [])
                builder.call(self.parallel_for, call_args)
                elapsed = builder.sub(builder.call(self.clock, []), start)
                slot = builder.gep(self.profile, [const_i64(self.launched)], source_etype=I64, inbounds=True)
                builder.store(elapsed, slot)
            with plain:
                builder.call(self.parallel_for, call_args)
        self.launched += 1


def _emit_entry(module: ir.Module, profiled: ir.Function) -> None:
    """kiln_run: kiln_run_profiled without a profile buffer."""
    entry = ir.Function(module, ir.FunctionType(I32, [PTR] * 4), name=ENTRY)
    builder = ir.IRBuilder(entry.append_basic_block("entry"))
    builder.ret(builder.call(profiled, [*entry.args, ir.Constant(PTR, None)]))


@dataclass(frozen=True)
class Batch:
    """A dynamic batch: the bound compiled for, each batched value's dim0 / batch, and the run-time size."""

    bound: int
    factors: dict
    size: ir.Value

    def work(self, builder: ir.IRBuilder, graph: Graph, node, work: int) -> ir.Value:
        """The items computing the first `size` entries: ceil(size * A / B) * C, or all `work` of them."""
        spec = kernel_for(node)
        items = spec.batch_items(graph, node, self.bound) if spec.batch_items and \
            Value(node.name) in self.factors else None
        if items is None or -(-self.bound * items[0] // items[1]) * items[2] != work:
            return const_i64(work)
        a, b, c = (const_i64(v) for v in items)
        return builder.mul(builder.udiv(builder.add(builder.mul(self.size, a), const_i64(items[1] - 1)), b), c)

    def bytes(self, builder: ir.IRBuilder, value: Value, size: int) -> ir.Value:
        if value not in self.factors:
            return const_i64(size)
        return builder.mul(self.size, const_i64(size // self.bound))


def _emit_at_bound(module: ir.Module, run: ir.Function, batch: int | None, extents: list[int] | None) -> ir.Function:
    """kiln_run_profiled of a dynamic-batch or dynamic-extent artifact: its entry at the upper bounds."""
    entry = ir.Function(module, ir.FunctionType(I32, [PTR] * 5), name=PROFILED_ENTRY)
    builder = ir.IRBuilder(entry.append_basic_block("entry"))
    sizes = [const_i64(batch or 1)]
    if extents is not None:
        array = builder.alloca(ir.ArrayType(I64, len(extents)), name="bounds")
        for dim, bound in enumerate(extents):
            builder.store(const_i64(bound), builder.gep(array, [const_i64(0), const_i64(dim)], inbounds=True))
        sizes.append(builder.bitcast(array, PTR))
    builder.ret(builder.call(run, [*entry.args, *sizes]))
    return entry


@dataclass(frozen=True)
class ExtentSizes:
    """Dynamic extents (compiler/dynamic_extent.py): each dim's bound, each value's held axes, the run-time
    array of sizes. The operand array holds that array at slot `slots`, a row launch's valid items at
    `slots + 1`; row launches follow the first dim."""

    bounds: list[int]
    axes: dict
    sizes: ir.Value

    def first(self, builder: ir.IRBuilder) -> ir.Value:
        return builder.load(builder.gep(self.sizes, [const_i64(0)], source_etype=I64, inbounds=True), typ=I64)

    def store(self, builder: ir.IRBuilder, operand_array: ir.Value, slot: int, value: ir.Value) -> None:
        builder.store(builder.inttoptr(value, PTR), builder.gep(operand_array, [const_i64(0), const_i64(slot)],
                                                                inbounds=True))


def _emit_steps(module: ir.Module, builder: ir.IRBuilder, graph: Graph, plan: MemoryPlan, bases: dict,
                launcher: _Launcher, precompute: bool, batch: Batch | None = None,
                extent: ExtentSizes | None = None) -> None:
    """The launches (and output copies) of the plan's steps that run per inference, or of those
    precomputed at load; task names keep the step's index in the whole plan. With `batch`, the
    first batch.size entries of a dynamic batch; with `extent`, row launches cut to its size."""
    memcpy = module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
    slots = max([len(graph.input_values(s.node)) + len(s.node.outputs) for s in plan.steps if s.node] + [1])
    operand_array = builder.alloca(ir.ArrayType(PTR, slots + (2 if extent else 0)), name="operands")
    first = None
    if extent:
        builder.store(extent.sizes, builder.gep(operand_array, [const_i64(0), const_i64(slots)], inbounds=True))
        first = extent.first(builder)
    progress = current()
    for index, step in enumerate(plan.steps):
        if step.precompute != precompute:
            continue
        if step.node is None:
            source = _operand_pointer(builder, bases, plan.locations[step.copy_source])
            target = _operand_pointer(builder, bases, Location("output", step.output_index))
            size = tensor_bytes(graph.type_of(step.copy_source))
            size = batch.bytes(builder, step.copy_source, size) if batch else const_i64(size)
            builder.call(memcpy, [target, source, size, ir.Constant(ir.IntType(1), 0)])
            continue
        node = step.node
        values = graph.input_values(node) + [Value(node.name, i) for i in range(len(node.outputs))]
        for slot, value in enumerate(values):
            pointer = ir.Constant(PTR, None) if value is None else _operand_pointer(builder, bases, plan.locations[value])
            builder.store(pointer, builder.gep(operand_array, [const_i64(0), const_i64(slot)], inbounds=True))
        progress.kernel(index, len(plan.steps), node.name)
        task = _emit_task(module, graph, node, index, plan.in_place.get(node.name), slots if extent else None,
                          len(extent.bounds) if extent else 0)
        work = kernel_for(node).work_items(graph, node)
        runs = extent and row_runs(graph, node, extent.axes.get(Value(node.name), frozenset()), extent.bounds[0],
                                   work, (batch.bound, batch.factors) if batch else None)
        if extent and EXTENT_IMAGE in node.attrs:
            sides = [None if side is None else Extent.from_json(side) for side in node.attrs[EXTENT_IMAGE]]
            task = emit_block_filter(module, task, *conv_blocks(graph, node), sides, slots, len(extent.bounds))
        if runs:
            valid = runs.valid(builder, first)
            extent.store(builder, operand_array, slots + 1, valid)
            launcher.launch(builder, emit_trampoline(module, task, runs.per_group, slots + 1), operand_array,
                            runs.launched(builder, valid, batch.size if batch else None))
            continue
        launcher.launch(builder, task, operand_array, batch.work(builder, graph, node, work) if batch else
                        const_i64(work))
    builder.ret(ir.Constant(I32, 0))


def build_module(graph: Graph, plan: MemoryPlan, batch: tuple[int, dict] | None = None,
                 extent: tuple[list[int], dict] | None = None) -> ir.Module:
    """`batch`: (upper bound, value -> dim0 / batch) of a dynamic batch; adds kiln_run_batch.
    `extent`: (each dynamic dim's bound, value -> what it holds) of dynamic extents; adds kiln_run_extent,
    taking the batch (ignored without a dynamic batch) and the array of the dims' sizes instead."""
    module = ir.Module(name="kiln_model")
    _emit_layout(module, layout_table(graph, plan))
    sizes = [I64, PTR] if extent else [I64] if batch else []
    run = ir.Function(module, ir.FunctionType(I32, [PTR] * 5 + sizes),
                      name=EXTENT_ENTRY if extent else BATCH_ENTRY if batch else PROFILED_ENTRY)
    weights, workspace, inputs, outputs, profile = run.args[:5]
    builder = ir.IRBuilder(run.append_basic_block("entry"))
    bases = {"weights": weights, "workspace": workspace, "input": inputs, "output": outputs}
    _emit_steps(module, builder, graph, plan, bases, _Launcher(module, builder, profile), precompute=False,
                batch=Batch(batch[0], batch[1], run.args[5]) if batch else None,
                extent=ExtentSizes(extent[0], extent[1], run.args[6]) if extent else None)
    _emit_entry(module, _emit_at_bound(module, run, batch[0] if batch else None, extent[0] if extent else None)
                if sizes else run)
    precompute = ir.Function(module, ir.FunctionType(I32, [PTR]), name=PRECOMPUTE)
    builder = ir.IRBuilder(precompute.append_basic_block("entry"))
    bases = {"weights": precompute.args[0]}
    _emit_steps(module, builder, graph, plan, bases, _Launcher(module, builder, None), precompute=True)
    return module
