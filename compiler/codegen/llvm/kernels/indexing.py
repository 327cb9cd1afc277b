"""Gather and GatherElements: strided box copies whose gathered axis is read from the indices at run time.

Negative indices count from the end of the axis. Out-of-range indices (an error in ONNX) are
clamped to the nearest valid index, so a bad index never reads outside the data tensor.
"""

from __future__ import annotations

from compiler.codegen.copy_plan import GATHERS
from compiler.codegen.llvm.kernels.strided_copy import register_copy_kernel

for op_types, plan in GATHERS.items():
    register_copy_kernel(op_types, plan)
