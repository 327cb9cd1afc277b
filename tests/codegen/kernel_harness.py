"""Single-node ONNX models compiled for the cpu target and checked against the ref target."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

import compiler
import runtime

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def node_model(op_type: str, feeds: dict, constants: dict | None = None, attrs: dict | None = None,
               outputs: tuple[str, ...] = ("y",), opset: int = 17):
    """A model of one `op_type` node whose inputs are `feeds` (graph inputs) then `constants` (initializers)."""
    constants = constants or {}
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                    for name, value in feeds.items()]
    initializers = [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()]
    node = helper.make_node(op_type, [*feeds, *constants], list(outputs), **(attrs or {}))
    graph_outputs = [helper.make_value_info(name, helper.TypeProto()) for name in outputs]
    graph = helper.make_graph([node], op_type.lower(), graph_inputs, graph_outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_cpu(model, feeds: dict) -> dict:
    """cpu results, checked bit-identical at 1 and 2 threads."""
    artifact = compiler.compile(model, target="cpu")
    single, double = (runtime.load(artifact, num_threads=threads).infer(feeds) for threads in (1, 2))
    for name, value in single.items():
        np.testing.assert_array_equal(value, double[name], err_msg=f"{name}: 1 vs 2 threads")
    return single


def assert_cpu_matches_ref(model, feeds: dict, exact: bool = False) -> dict:
    """cpu results (at 1 and 2 threads) match the ref target."""
    expected = runtime.load(compiler.compile(model, target="ref")).infer(feeds)
    actual = run_cpu(model, feeds)
    for name, want in expected.items():
        assert actual[name].shape == want.shape and actual[name].dtype == want.dtype, name
        if exact:
            np.testing.assert_array_equal(actual[name], want, err_msg=name)
        else:
            np.testing.assert_allclose(actual[name], want, **TOLERANCE, err_msg=name)
    return actual


def random(shape, dtype=np.float32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-20, 20, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def optimized_kernels(model, disable=()) -> tuple:
    """(the cpu kernels of `model` after LLVM's O3 pipeline as IR text by function name, its lowered graph, its
    memory plan)."""
    import llvmlite.binding as llvm

    from compiler.codegen.llvm.aot import build_module
    from compiler.codegen.llvm.kernels.registry import in_place_input
    from compiler.codegen.llvm.machine import MachineSpec, target_machine
    from compiler.codegen.memory_plan import plan_memory
    from compiler.driver import optimize

    lowered = optimize(model, "cpu", disable=list(disable))
    plan = plan_memory(lowered, in_place_input)
    module = build_module(lowered, plan)
    machine = target_machine(MachineSpec("", "", "").resolved())
    module.triple, module.data_layout = machine.triple, str(machine.target_data)
    parsed = llvm.parse_assembly(str(module))
    tuning = llvm.PipelineTuningOptions(speed_level=3)
    tuning.loop_vectorization = True
    tuning.slp_vectorization = True
    llvm.create_pass_builder(machine, tuning).getModulePassManager().run(parsed, llvm.create_pass_builder(
        machine, tuning))
    return {f.name: str(f) for f in parsed.functions}, lowered, plan
