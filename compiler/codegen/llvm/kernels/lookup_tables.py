"""Compile-time lookup tables: numpy arrays placed in the module as internal constant globals.

Kernels whose geometry is static (Resize, Col2Im, AffineGrid) work out per-coordinate indices
and weights in Python and read them back with `load(builder, table, dtype, index)`.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from compiler.codegen.llvm.irhelpers import I8, load
from compiler.ir.types import dtype_of_array


class Table:
    """One constant array in the module; `table[index]` emits a load of element `index` (i64)."""

    def __init__(self, module: ir.Module, values, name: str):
        array = np.ascontiguousarray(values)
        self.dtype = dtype_of_array(array)
        data = bytearray(array.astype(array.dtype.newbyteorder("<")).tobytes()) or bytearray(1)
        self.global_ = ir.GlobalVariable(module, ir.ArrayType(I8, len(data)), name=module.get_unique_name(name))
        self.global_.global_constant, self.global_.linkage, self.global_.align = True, "internal", 16
        self.global_.initializer = ir.Constant(ir.ArrayType(I8, len(data)), data)

    def load(self, builder: ir.IRBuilder, index: ir.Value) -> ir.Value:
        return load(builder, self.global_, self.dtype, index)
