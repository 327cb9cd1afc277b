"""Dropout at inference: the output is the input and the mask is all true.

That holds whenever training mode is off (the training_mode input absent or a constant false;
before opset 7, is_test set) or the ratio is a constant 0. Training with a nonzero ratio draws
random numbers, which a compiled model does not reproduce, so it is refused.
A work item is a chunk of CHUNK elements.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, element_type, for_range, kind_of, store
from compiler.codegen.llvm.kernels.gather_nd import copy_elements
from compiler.codegen.llvm.kernels.linear_algebra import smin
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.ir.graph import Graph, Node

CHUNK = 16384


def _constant(graph: Graph, node: Node, index: int):
    """(present, value): the value is None when the input is computed at run time."""
    values = graph.input_values(node)
    if index >= len(values) or values[index] is None:
        return False, None
    return True, graph.constant_value(values[index])


def _check(graph: Graph, node: Node) -> str | None:
    if node.version is not None and node.version < 7 and not node.attrs.get("is_test", 0):
        return (f"Dropout-{node.version} without is_test=1 runs in training mode, which draws random numbers: "
                "not compiled by the cpu target (set is_test=1 for inference)")
    present, training = _constant(graph, node, 2)
    if not present or (training is not None and not np.any(training)):
        return None
    if training is None:
        return ("Dropout with training_mode computed at run time is not compiled by the cpu target "
                "(training draws random numbers; make training_mode a constant false)")
    ratio_present, ratio = _constant(graph, node, 1)
    if ratio_present and ratio is not None and float(np.ravel(ratio)[0]) == 0.0:
        return None
    return ("Dropout in training mode with a ratio other than a constant 0 draws random numbers, which the cpu "
            "target does not generate (use training_mode=false for inference)")


def _emit(ctx: KernelContext) -> None:
    b, x = ctx.builder, ctx.inputs[0]
    with for_range(b, ctx.begin, ctx.end, name="chunk") as chunk:
        start = b.mul(chunk, const_i64(CHUNK))
        count = smin(b, const_i64(CHUNK), b.sub(const_i64(x.size), start))
        copy_elements(b, ctx.outputs[0].ptr, start, x.ptr, start, x.dtype, count)
        if len(ctx.outputs) > 1:
            mask = ctx.outputs[1]
            true = ir.Constant(element_type(mask.dtype), 1.0 if kind_of(mask.dtype) == "float" else 1)
            with for_range(b, 0, count, name="mask") as i:
                store(b, true, mask.ptr, mask.dtype, b.add(start, i))


def _chunks(graph: Graph, node: Node) -> int:
    return -(-math.prod(graph.input_types(node)[0].shape) // CHUNK)


register_kernel(KernelSpec(("Dropout",), _check, _chunks, _emit))
