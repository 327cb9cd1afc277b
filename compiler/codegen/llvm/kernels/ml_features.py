"""ArrayFeatureExtractor and Binarizer of ai.onnx.ml.

ArrayFeatureExtractor picks columns of the last axis: a Gather on that axis with the indices
flattened (negative indices count from the end, out-of-range ones are clamped, as Gather's are).
Binarizer is an elementwise x > threshold over the broadcasting loop.
"""

from __future__ import annotations

import math

from llvmlite import ir

from compiler.codegen.copy_plan import Copy, Gathered, NotCompiled
from compiler.codegen.llvm.irhelpers import F64, element_type, kind_of
from compiler.codegen.llvm.kernels.broadcast import emit_broadcast_loop, row_count
from compiler.codegen.llvm.kernels.math_functions import float_constant
from compiler.codegen.llvm.kernels.registry import KernelContext, KernelSpec, register_kernel
from compiler.codegen.llvm.kernels.strided_copy import register_copy_kernel
from compiler.ir.graph import Graph, Node

DOMAIN = "ai.onnx.ml"
NUMBERS = ("float32", "float64", "int32", "int64")


def _array_feature_extractor(graph: Graph, node: Node) -> list[Copy]:
    """Output row r holds data[r, indices[k]] for each flattened index k (a 1-D X is one row)."""
    data, indices = graph.input_types(node)
    if indices.dtype != "int64":
        raise NotCompiled(f"ArrayFeatureExtractor with {indices.dtype} indices is not compiled by the cpu target")
    columns, count = data.shape[-1], math.prod(indices.shape)
    rows = math.prod(data.shape[:-1])
    if math.prod(node.outputs[0].shape) != rows * count:
        raise NotCompiled(f"ArrayFeatureExtractor output {node.outputs[0].shape} does not hold {rows} rows of {count}")
    if columns == 0 and count:
        raise NotCompiled("ArrayFeatureExtractor from an empty last axis has nothing to pick")
    return [Copy(0, 0, (rows, count), (columns, 0), (count, 1), gathered=Gathered(1, columns, 1, (0, 1)))]


register_copy_kernel((f"{DOMAIN}::ArrayFeatureExtractor",), _array_feature_extractor)


def _check_binarizer(graph: Graph, node: Node) -> str | None:
    dtype = graph.input_types(node)[0].dtype
    if dtype not in NUMBERS:
        return f"Binarizer on {dtype} is not compiled by the cpu target (it handles {', '.join(NUMBERS)})"
    return None


def _emit_binarizer(ctx: KernelContext) -> None:
    """1 where x > threshold, else 0. Floats compare with the threshold rounded to their dtype
    and integers in double, as numpy compares an array with a Python float."""
    x, threshold = ctx.inputs[0], float(ctx.node.attrs.get("threshold", 0.0))
    value_type = element_type(x.dtype)
    floating = kind_of(x.dtype) == "float"
    one, zero = (ir.Constant(value_type, float(v) if floating else v) for v in (1, 0))

    def body(b: ir.IRBuilder, values: list) -> ir.Value:
        value = values[0] if floating else b.sitofp(values[0], F64)
        return b.select(b.fcmp_ordered(">", value, float_constant(value.type, threshold)), one, zero)

    emit_broadcast_loop(ctx, [x], ctx.outputs[0], body)


register_kernel(KernelSpec((f"{DOMAIN}::Binarizer",), _check_binarizer,
                           lambda graph, node: row_count(node.outputs[0].shape, [graph.input_types(node)[0].shape]),
                           _emit_binarizer))
