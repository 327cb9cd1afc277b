"""What every target's kernel operand knows about its tensor: the static type and the dense
row-major layout that follows from it. The cpu's TensorArg and the gpu's Tensor add only how the
kernel reaches the data (an LLVM pointer, an OpenCL parameter name)."""

from __future__ import annotations

import math
from typing import Sequence

from compiler.ir.types import TensorType


def dense_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major element strides of `shape`."""
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


class TensorOperand:
    """Shape facts of an operand whose subclass holds its static type in `type`."""

    type: TensorType

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def size(self) -> int:
        return math.prod(self.type.shape)

    @property
    def strides(self) -> tuple[int, ...]:
        """Row-major element strides."""
        return dense_strides(self.type.shape)
