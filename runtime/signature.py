"""Model signature (names, dtypes, shapes with symbolic dims) and input validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


class InputError(ValueError):
    """The inputs given to infer() do not match the model's signature."""


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output. `shape` holds ints, dim names, or None; `kind` is tensor/sequence/optional;
    `bounds`, when given, holds per dim None or the (min, max) sizes the artifact runs (max None: unbounded)."""

    name: str
    dtype: str | None
    shape: tuple | None
    kind: str = "tensor"
    bounds: tuple | None = None

    @classmethod
    def from_manifest(cls, entry: dict) -> "TensorInfo":
        value_type, kind = entry["type"], "tensor"
        while value_type is not None and ("sequence" in value_type or "optional" in value_type):
            kind = kind if kind != "tensor" else ("sequence" if "sequence" in value_type else "optional")
            value_type = value_type.get("sequence", value_type.get("optional"))
        if value_type is None:
            return cls(entry["name"], None, None, kind)
        shape = None if value_type["shape"] is None else tuple(value_type["shape"])
        bounds = entry.get("bounds")
        bounds = None if bounds is None else tuple(None if b is None else tuple(b) for b in bounds)
        return cls(entry["name"], value_type["tensor"], shape, kind, bounds)


_NUMPY_NAMES = {"string": "object", "bool": "bool"}


# numpy / ml_dtypes names that differ from the IR's dtype names.
_IR_NAMES = {"float8_e4m3fn": "float8e4m3fn", "float8_e4m3fnuz": "float8e4m3fnuz", "float8_e5m2": "float8e5m2",
             "float8_e5m2fnuz": "float8e5m2fnuz", "float8_e8m0fnu": "float8e8m0", "float4_e2m1fn": "float4e2m1"}


def _dtype_name(array: np.ndarray) -> str:
    if array.dtype.kind in "OUS":
        return "string"
    return _IR_NAMES.get(str(array.dtype), str(array.dtype))


def within(limits, size: int) -> bool:
    """Whether `size` lies in the (min, max) bounds of a dim (max None: unbounded)."""
    return limits[0] <= size and (limits[1] is None or size <= limits[1])


def format_bounds(limits) -> str:
    return f"{limits[0]}..{'' if limits[1] is None else limits[1]}"


def _check_tensor(info: TensorInfo, value, bindings: dict) -> np.ndarray:
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if info.dtype is not None and _dtype_name(array) != info.dtype:
        raise InputError(f"input {info.name!r} has dtype {_dtype_name(array)}, the model expects {info.dtype}; "
                         f"convert it, e.g. value.astype(np.{_NUMPY_NAMES.get(info.dtype, info.dtype)})")
    if info.shape is None:
        return array
    if array.ndim != len(info.shape):
        raise InputError(f"input {info.name!r} has shape {list(array.shape)} (rank {array.ndim}), the model expects "
                         f"rank {len(info.shape)}: {list(info.shape)}")
    for axis, (dim, size) in enumerate(zip(info.shape, array.shape)):
        if isinstance(dim, int) and dim != size:
            raise InputError(f"input {info.name!r} has shape {list(array.shape)}, the model expects {list(info.shape)} "
                             f"(axis {axis} must be {dim})")
        limits = info.bounds[axis] if info.bounds else None
        if limits is not None and not within(limits, size):
            raise InputError(f"input {info.name!r} has shape {list(array.shape)}: axis {axis} ({dim}) is {size}, "
                             f"outside the sizes {format_bounds(limits)} this artifact was compiled for")
        if isinstance(dim, str):
            bound = bindings.setdefault(dim, (size, info.name))
            if bound[0] != size:
                raise InputError(f"dim {dim!r} is {bound[0]} in input {bound[1]!r} but {size} in input {info.name!r}; "
                                 "inputs sharing a dim name must agree")
    return array


def validate_inputs(infos: list[TensorInfo], feeds: Mapping[str, object], frozen: tuple[str, ...] = ()) -> list:
    """The inputs in signature order, checked; raises InputError naming the input at fault.
    `frozen` names model inputs compiled in as constants (no longer inputs of the artifact)."""
    if not isinstance(feeds, Mapping):
        raise InputError(f"infer() takes a dict of input name -> array, got {type(feeds).__name__}")
    names = [info.name for info in infos]
    unknown = sorted(set(feeds) - set(names))
    missing = [name for name in names if name not in feeds]
    if set(unknown) & set(frozen):
        raise InputError(f"inputs {sorted(set(unknown) & set(frozen))} were frozen to constants when this artifact "
                         "was compiled, so they are not inputs any more; compile again without freezing them "
                         "to feed other values")
    if unknown or missing:
        raise InputError(f"inputs do not match the model: missing {missing}, unknown {unknown}; the model takes {names}")
    bindings: dict = {}
    values = []
    for info in infos:
        value = feeds[info.name]
        if info.kind == "tensor":
            value = _check_tensor(info, value, bindings)
        elif info.kind == "sequence" and not isinstance(value, list):
            raise InputError(f"input {info.name!r} is a sequence: pass a list of arrays")
        values.append(value)
    return values
