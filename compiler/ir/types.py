"""Value types of the IR: tensors (with symbolic dims), sequences and optionals.

A dim is an int (known), a str (a symbolic name such as "batch": equal names are equal
sizes) or None (unknown and unnamed). A shape of None means the rank itself is unknown.
Nothing in the compiler may assume every dim is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import ml_dtypes
import numpy as np

Dim = Union[int, str, None]

# IR dtype name -> numpy dtype. bfloat16 and the float8 family come from ml_dtypes.
_NUMPY_DTYPES = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float64": np.dtype(np.float64),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "string": np.dtype(object),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
    "float8e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "float8e8m0": np.dtype(ml_dtypes.float8_e8m0fnu),
    "uint4": np.dtype(ml_dtypes.uint4),
    "int4": np.dtype(ml_dtypes.int4),
    "float4e2m1": np.dtype(ml_dtypes.float4_e2m1fn),
    "uint2": np.dtype(ml_dtypes.uint2),
    "int2": np.dtype(ml_dtypes.int2),
}
DTYPES = tuple(_NUMPY_DTYPES)


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype that holds values of IR dtype `dtype`."""
    try:
        return _NUMPY_DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known dtypes: {', '.join(DTYPES)}") from None


def dtype_of_array(array: np.ndarray) -> str:
    """The IR dtype name of a numpy array (strings are object arrays)."""
    if array.dtype.kind in "OUS":
        return "string"
    for name, np_dtype in _NUMPY_DTYPES.items():
        if np_dtype == array.dtype:
            return name
    raise ValueError(f"numpy dtype {array.dtype} has no IR dtype")


def format_dim(dim: Dim) -> str:
    return "?" if dim is None else str(dim)


@dataclass(frozen=True)
class TensorType:
    """A tensor: element dtype and shape (None when even the rank is unknown)."""

    dtype: str
    shape: tuple[Dim, ...] | None = None

    def __post_init__(self):
        numpy_dtype(self.dtype)
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(self.shape))
            for dim in self.shape:
                if not (dim is None or isinstance(dim, str) or (isinstance(dim, int) and dim >= 0)):
                    raise ValueError(f"bad dim {dim!r} in shape {self.shape}: use an int >= 0, a name or None")

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[*]"
        return f"{self.dtype}[{','.join(format_dim(d) for d in self.shape)}]"


@dataclass(frozen=True)
class SequenceType:
    """An ONNX sequence of values of one element type."""

    elem: "ValueType"

    def __str__(self) -> str:
        return f"seq<{self.elem}>"


@dataclass(frozen=True)
class OptionalType:
    """An ONNX optional: a value of the element type, or none."""

    elem: "ValueType"

    def __str__(self) -> str:
        return f"opt<{self.elem}>"


ValueType = Union[TensorType, SequenceType, OptionalType]


def type_of_value(value) -> ValueType:
    """The IR type of a runtime value (numpy array, list of arrays, or None for an empty optional)."""
    if isinstance(value, list):
        elem = type_of_value(value[0]) if value else TensorType("float32", None)
        return SequenceType(elem)
    array = np.asarray(value)
    return TensorType(dtype_of_array(array), array.shape)
