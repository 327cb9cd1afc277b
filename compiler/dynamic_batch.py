"""Dynamic batch: one cpu artifact for a bounded leading dim (`shapes={"ids": ["1..8", 128]}`).

The graph is compiled at the upper bound, so every kernel keeps its static fast paths and the
memory plan is the bound's. At run time the entry `kiln_run_batch` takes the batch size n: a kernel
whose work items walk the batch outermost launches only the items of the first n entries
(KernelSpec.batch_items), the output copies move n entries, and the runtime stages inputs in
bound-sized buffers and returns the first n entries of each output.

That is exact only where every batch entry is computed from the same entry of the inputs. So the
optimized graph is checked node by node (`batch_factors`): a value carries the batch when it is
computed from a dynamic input, and must then hold it on axis 0 (dim0 = k x batch, rows of one entry
contiguous); ops must keep entries apart (no reduction, softmax or normalization over axis 0, no
transpose, concat, slice or gather moving axis 0, no MatMul contracting it). Before folding,
`check_batch_arithmetic` refuses values computed from the batch size itself (Shape of a batched
tensor feeding arithmetic), which folding would fix to the bound. Anything refused names the node
and says to use `specialize=` (compiler/dispatch.py), which compiles static parts instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from compiler.codegen.llvm.kernels.registry import BATCH_ROWS
from compiler.ir.graph import KILN_DOMAIN, Graph, Node, Value
from compiler.ir.types import TensorType
from compiler.ops.elementwise import ACTIVATIONS, BINARY, CASTS, UNARY_MATH, VARIADIC
from compiler.ops.blocked_conv import BASES as BLOCKED_CONV
from compiler.ops.fused_linear import BASES as FUSED_LINEAR
from compiler.ops.fused_normalization import BASES as FUSED_NORMALIZATION

BATCH_DIM = "batch"
ELEMENTWISE = frozenset({*UNARY_MATH, *BINARY, *VARIADIC, *ACTIVATIONS, *CASTS, "QuantizeLinear",
                         "DequantizeLinear"})
ELEMENTWISE_KILN = frozenset({"FusedElementwise", "QuantizedAdd", "MaskTail", "ExtentScale"})
LINEAR = frozenset({"MatMul", "Gemm", "FusedMatMul", "FusedGemm", "QuantizedMatMul", "MatMulInteger",
                    "QLinearMatMul"})
PER_IMAGE = frozenset({"Conv", "FusedConv", "BlockedConv", "QuantizedConv", "ConvInteger", "QLinearConv",
                       "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
                       "GlobalLpPool", "LRN", "InstanceNormalization", "BatchNormalization", "DepthToSpace", "SpaceToDepth"})
QUANTIZED = frozenset({"QuantizedMatMul", "MatMulInteger", "QLinearMatMul"})  # GEMMs planned their own way
VIEWS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
ALONG_AN_AXIS = frozenset({"Softmax", "LogSoftmax", "Hardmax", "FusedSoftmax", "LayerNormalization",
                           "FusedLayerNormalization", "Concat", "ArgMax", "ArgMin", "CumSum", "Split", "TopK"})
REDUCTIONS = frozenset({"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
SHAPE_SINKS = {"Reshape": 1, "Expand": 1, "ConstantOfShape": 0, "Tile": 1, "Range": None}
SHAPE_MOVES = frozenset({"Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Cast", "Identity"})
_BOUNDS = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d*)\s*$")
UNBOUNDED_CHUNK = 8  # entries an unbounded batch's artifact computes per call


class DynamicBatchError(ValueError):
    """The model or the shapes asked for cannot run with a dynamic batch."""


@dataclass(frozen=True)
class BatchBounds:
    """`high` None: unbounded; the artifact then computes `chunk` entries a call and the runtime
    runs a larger batch in chunks (exact: entries are independent, as batch_factors checks)."""

    low: int
    high: int | None
    inputs: tuple[str, ...]

    @property
    def chunk(self) -> int:
        """The entries the code is compiled for: the upper bound, or UNBOUNDED_CHUNK."""
        return UNBOUNDED_CHUNK if self.high is None else self.high

    @classmethod
    def from_options(cls, options: dict) -> "BatchBounds | None":
        given = options.get("dynamic_batch")
        return None if not given else cls(int(given["min"]), given["max"], tuple(given["inputs"]))

    def option(self) -> dict:
        """The compile option (JSON) the cpu target reads back with from_options."""
        return {"min": self.low, "max": self.high, "inputs": list(self.inputs)}

    def describe(self, manifest: dict, graph: Graph, factors: dict[Value, int]) -> None:
        """Manifest: `dynamic_batch` (bounds, dim0 / batch of each batched input and output), and the
        signature's axis 0 of those as the symbolic dim with its bounds (runtime/signature.py)."""
        outputs = {name: factors[value] for name, value in graph.outputs if value in factors}
        manifest["dynamic_batch"] = {"name": BATCH_DIM, "min": self.low, "max": self.high, "chunk": self.chunk,
                                     "inputs": {name: 1 for name in self.inputs}, "outputs": outputs}
        marked = [(entry, 1) for entry in manifest["inputs"] if entry["name"] in self.inputs]
        marked += [(entry, outputs[entry["name"]]) for entry in manifest["outputs"] if entry["name"] in outputs]
        for entry, factor in marked:
            shape = entry["type"]["shape"]
            entry["type"]["shape"] = [BATCH_DIM if factor == 1 else f"{factor}*{BATCH_DIM}", *shape[1:]]
            high = None if self.high is None else factor * self.high
            entry["bounds"] = [[factor * self.low, high]] + [None] * (len(shape) - 1)


def bounds_of(dim) -> tuple[int, int | None] | None:
    if isinstance(dim, (tuple, list)) and len(dim) == 2:
        return int(dim[0]), None if dim[1] is None else int(dim[1])
    match = _BOUNDS.match(dim) if isinstance(dim, str) else None
    return (int(match[1]), int(match[2]) if match[2] else None) if match else None


def split_bounds(shapes: Mapping[str, Sequence] | None) -> tuple[dict | None, BatchBounds | None]:
    """(the shapes with each dynamic dim at the size compiled for, the batch bounds or None). A dynamic dim
    is "LOW..HIGH" or (LOW, HIGH), "LOW.." or (LOW, None) when unbounded; it may only be axis 0, with the
    same bounds in every input that has one."""
    if not shapes:
        return shapes, None
    static, bounds, names = {}, set(), []
    for name, shape in shapes.items():
        dims = list(shape)
        for axis, dim in enumerate(dims):
            found = bounds_of(dim)
            if found is None:
                continue
            if axis != 0:
                continue  # a dynamic dim past the batch: compiler/dynamic_extent.py
            low, high = found
            if not 1 <= low <= (low if high is None else high):
                raise DynamicBatchError(f"input {name!r}: batch bounds {dim} need 1 <= low <= high")
            bounds.add(found)
            names.append(name)
            dims[axis] = BatchBounds(low, high, ()).chunk
        static[name] = dims
    if len(bounds) > 1:
        raise DynamicBatchError(f"inputs {names} give different batch bounds {sorted(map(str, bounds))}; they share "
                                "one batch")
    if not bounds:
        return shapes, None
    (low, high), = bounds
    return static, BatchBounds(low, high, tuple(names))


# ---- before folding: nothing computes with the batch size itself ----

def _batched_values(graph: Graph, inputs: Sequence[str]) -> set[str]:
    """Nodes computed (through data, not only shapes) from the dynamic inputs."""
    reached = set(inputs)
    for node in graph.topological_order():
        if node.name in reached or node.is_input or node.is_constant:
            continue
        if node.domain == "" and node.op_type in ("Shape", "Size"):
            continue
        if any(value is not None and value.node in reached for value in graph.input_values(node)):
            reached.add(node.name)
    return reached


def check_batch_arithmetic(graph: Graph, bounds: BatchBounds) -> None:
    """Refuse a Shape/Size of a batched value whose batch entry reaches anything but a shape operand
    (Reshape's shape, Expand, ConstantOfShape, Tile, Range): folding at the bound would fix it."""
    check_size_arithmetic(graph, {name: {0} for name in bounds.inputs}, "batch size", SHAPE_SINKS,
                          "Compile one part per batch size with specialize= instead", computed_axes={0})


def check_size_arithmetic(graph: Graph, inputs: Mapping[str, set[int]], what: str, sinks: Mapping[str, int | None],
                          advice: str, computed_axes: set[int] | None = None,
                          error: type[ValueError] = DynamicBatchError) -> None:
    """Refuse a Shape/Size of a value computed from `inputs` (name -> the dynamic axes) whose dynamic
    elements reach anything but a shape operand in `sinks` (op -> its operand, None: any). The dynamic
    axes of a computed value are `computed_axes`; None: unknown, so no Gather/Slice drops them."""
    reached = _batched_values(graph, list(inputs))
    for node in graph.topological_order():
        if node.domain != "" or node.op_type not in ("Shape", "Size"):
            continue
        source = graph.input_values(node)[0]
        if source.node not in reached or (node.op_type == "Shape" and node.attrs.get("start", 0) not in (0, None)):
            continue
        elements = inputs.get(source.node, computed_axes)
        pending = [Value(node.name)]
        while pending:
            for reader_name, position in graph.uses(pending.pop()):
                reader = graph.node(reader_name)
                moves = reader.domain == "" and reader.op_type in SHAPE_MOVES
                sets_a_shape = reader.domain == "" and reader.op_type in sinks and sinks[reader.op_type] in (None,
                                                                                                           position)
                if sets_a_shape or (moves and _drops(graph, reader, elements)):
                    continue
                if moves:
                    pending.extend(Value(reader.name, i) for i in range(len(reader.outputs)))
                    continue
                raise error(
                    f"node {reader.name!r} ({reader.qualified_op}) computes with the {what} (from "
                    f"{node.op_type} {node.name!r} of a tensor holding it); compiled once for all sizes it "
                    f"would use the upper bound. {advice}")


def _drops(graph: Graph, node: Node, elements: set[int] | None) -> bool:
    """A Gather/Slice of a shape vector that keeps none of `elements` (the dynamic ones) of it."""
    values = graph.input_values(node)
    if elements is None:
        return False
    if node.op_type == "Gather" and len(values) > 1:
        indices = graph.constant_value(values[1])
        return indices is not None and bool(np.all(indices >= 0)) and not elements & set(indices.ravel().tolist())
    if node.op_type == "Slice" and len(values) > 2:
        starts, ends = graph.constant_value(values[1]), graph.constant_value(values[2])
        return starts is not None and starts.size == 1 and ends is not None and \
            not any(int(starts.ravel()[0]) <= element < int(ends.ravel()[0]) for element in elements)
    return False


# ---- after optimization: which values carry the batch, and every node keeps entries apart ----

def _axis(node: Node, rank: int, default: int) -> int:
    axis = int(node.attrs.get("axis", default))
    return axis + rank if axis < 0 else axis


def _misplaced(node: Node, types: list, carried: list[bool]) -> bool:
    """Whether a batched operand of an elementwise computation does not line up with the output's axis 0."""
    out_shape = node.outputs[0].shape
    return any(c and (len(t.shape) != len(out_shape) or t.shape[0] != out_shape[0]) for t, c in zip(types, carried))


def _linear(graph: Graph, node: Node, types: list, carried: list[bool]) -> str | None:
    if node.op_type in ("Gemm", "FusedGemm") and node.attrs.get("transA", 0) and carried[0]:
        return "its A is transposed, so the batch would be contracted"
    if len(carried) > 1 and carried[1] and (len(types[1].shape) < 3 or not carried[0]):
        return "it contracts its second operand over the batch"
    return None


def _per_image(graph: Graph, node: Node, types: list, carried: list[bool]) -> str | None:
    return "a batched weight or statistic" if any(carried[1:]) else None


def _along_an_axis(graph: Graph, node: Node, types: list, carried: list[bool]) -> str | None:
    """Softmax, LayerNormalization, Concat, ArgMax, CumSum, ...: anything but axis 0 keeps entries apart."""
    rank = len(node.outputs[0].shape)
    if node.op_type == "CumSum":
        axis = graph.constant_value(graph.input_values(node)[1])
        along = axis is None or int(axis) % rank == 0
    else:
        along = _axis(node, rank, AXIS_DEFAULTS.get(node.op_type, -1)) == 0
    if node.op_type in ("Softmax", "LogSoftmax", "Hardmax") and (node.version or 13) < 13:
        along = _axis(node, rank, 1) == 0  # before opset 13: the input as 2-D, [axis:] flattened
    return "it works along the batch axis" if along else None


def _reduction(graph: Graph, node: Node, types: list, carried: list[bool]) -> str | None:
    values = graph.input_values(node)
    axes = node.attrs.get("axes")
    if axes is None and len(values) > 1 and values[1] is not None:
        constant = graph.constant_value(values[1])
        axes = None if constant is None else constant.ravel().tolist()
    reduced = None if axes is None else {int(a) % len(types[0].shape) for a in axes}
    return None if reduced and 0 not in reduced else "it reduces the batch axis"


def _gather(graph: Graph, node: Node, types: list, carried: list[bool]) -> str | None:
    axis = _axis(node, len(types[0].shape), 0)
    if carried[0]:
        return None if axis != 0 and not carried[1] else "it gathers batch entries"
    return None if axis == 0 else "its indices' batch lands off axis 0"


def _keeps_axis_0(graph: Graph, node: Node, types: list, carried: list[bool]) -> str | None:
    """Slice, Pad, Expand, Tile: fine while they leave axis 0 as it is."""
    return None if types[0].shape[0] == node.outputs[0].shape[0] else f"{node.op_type} changes the batch axis"


def _elementwise(graph: Graph, node: Node, types: list, carried: list[bool]) -> str | None:
    return "a batched operand broadcasts into other axes" if _misplaced(node, types, carried) else None


def _transpose(graph: Graph, node: Node, types: list, carried: list[bool]) -> str | None:
    perm = list(node.attrs.get("perm", reversed(range(len(types[0].shape)))))
    return None if perm[:1] == [0] else "it moves the batch axis"


AXIS_DEFAULTS = {"Concat": 0, "ArgMax": 0, "ArgMin": 0, "Split": 0}
RULES = {**{op: _linear for op in LINEAR}, **{op: _per_image for op in PER_IMAGE},
         **{op: _along_an_axis for op in ALONG_AN_AXIS}, **{op: _reduction for op in REDUCTIONS},
         **{op: _elementwise for op in ELEMENTWISE | ELEMENTWISE_KILN}, **{op: (lambda *_: None) for op in VIEWS},
         **{op: _keeps_axis_0 for op in ("Slice", "Pad", "Expand", "Tile")},
         "Gather": _gather, "Transpose": _transpose}


def _separation_problem(graph: Graph, node: Node, carried: list[bool]) -> str | None:
    """Why `node` mixes batch entries (None when each output entry reads only the same input entries)."""
    types = graph.input_types(node)
    fused = FUSED_LINEAR.get(node.op_type) or BLOCKED_CONV.get(node.op_type) or FUSED_NORMALIZATION.get(node.op_type)
    if node.domain == KILN_DOMAIN and fused:  # operands after the base op's are elementwise with the output
        count = fused[1]  # fused linear: X, W[, B]; fused normalization: the parameters after X (X is computed)
        if _misplaced(node, types[count:], carried[count:]):
            return "a batched operand of its fused elementwise ops broadcasts into other axes"
        if node.op_type in FUSED_NORMALIZATION and any(carried[:count]):
            return "a batched scale or bias"
        types, carried = types[:count], carried[:count]
    rule = RULES.get(node.op_type)
    return rule(graph, node, types, carried) if rule else "Kiln does not know that this op keeps batch entries apart"


def batch_factors(graph: Graph, bounds: BatchBounds) -> dict[Value, int]:
    """value -> k for every value carrying the batch on axis 0 (dim0 = k x the batch size); raises
    DynamicBatchError naming the first node that does not keep batch entries apart."""
    factors: dict[Value, int] = {}
    for name in bounds.inputs:
        factors[Value(name)] = _factor(graph.type_of(Value(name)), bounds, f"input {name!r}")
    for node in graph.topological_order():
        if node.is_input or node.is_constant:
            continue
        carried = [value is not None and value in factors for value in graph.input_values(node)]
        if not any(carried):
            continue
        problem = _separation_problem(graph, node, carried)
        if problem:
            raise DynamicBatchError(f"node {node.name!r} ({node.qualified_op}) cannot run with a dynamic batch: "
                                    f"{problem}. Compile one part per batch size with specialize= instead")
        for index, value_type in enumerate(node.outputs):
            factors[Value(node.name, index)] = _factor(value_type, bounds, f"node {node.name!r} ({node.qualified_op})")
    return factors


def mark_linear_rows(graph: Graph, factors: dict[Value, int], bounds: BatchBounds) -> None:
    """Give batched MatMul/Gemm nodes the rows of one entry (registry.BATCH_ROWS) for their GEMM plan."""
    for node in graph.nodes():
        if node.op_type in LINEAR and Value(node.name) in factors and node.op_type not in QUANTIZED:
            rows = math.prod(node.outputs[0].shape[:-1]) // bounds.chunk
            node.attrs[BATCH_ROWS] = math.gcd(node.attrs.get(BATCH_ROWS, rows), rows)  # a dynamic extent's too


def _factor(value_type, bounds: BatchBounds, where: str) -> int:
    if not isinstance(value_type, TensorType) or not value_type.shape or value_type.shape[0] % bounds.chunk:
        shape = getattr(value_type, "shape", None)
        raise DynamicBatchError(f"{where} gives shape {shape} at batch {bounds.chunk}: the batch must stay on axis 0 "
                                "(its size a multiple of the batch). Compile one part per batch size with "
                                "specialize= instead")
    return value_type.shape[0] // bounds.chunk
