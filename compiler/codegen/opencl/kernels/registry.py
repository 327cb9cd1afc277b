"""gpu kernel registry: for each op type, which nodes it can compile and which kernels compute them.

A family module registers a GpuKernelSpec(op_types, check, launches): `check(graph, node)` says
why a node cannot be compiled (None when it can), `launches(ctx)` returns the kernels that
compute it, in order. A kernel is rendered from the family's jinja2 template with the name
placeholder NAME (program.py names and deduplicates kernels); its parameters are the node's
tensors, each passed as a buffer plus an element offset (a tensor lives at an offset inside the
workspace or weights buffer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jinja2

from compiler.codegen.kernel_table import KernelTable
from compiler.codegen.opencl.dialect import OpenCLDialect
from compiler.codegen.opencl.launch import Launch, LaunchPlanner
from compiler.codegen.tensor_operand import TensorOperand
from compiler.ir.graph import Graph, Node
from compiler.ir.types import TensorType

NAME = "KILN_KERNEL_NAME"
INT_LIMIT = 2 ** 31 - 1  # element indices above this need 64-bit index arithmetic

TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), undefined=jinja2.StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)


@dataclass(frozen=True)
class Tensor(TensorOperand):
    """A kernel parameter: `name` in the kernel, the graph operand it binds ("input"/"output", index)."""

    name: str
    role: str
    index: int
    type: TensorType
    ctype: str

    @property
    def readonly(self) -> bool:
        return self.role == "input"

    @property
    def scratch(self) -> bool:
        return self.role == "scratch"


@dataclass
class KernelLaunch:
    """One kernel of a node: its source (named NAME), its parameters in order, its NDRange."""

    source: str
    params: list[Tensor]
    launch: Launch


@dataclass
class GpuContext:
    """What a family sees while planning a node."""

    graph: Graph
    node: Node
    dialect: OpenCLDialect
    planner: LaunchPlanner
    _types: list = field(init=False)

    def __post_init__(self):
        self._types = self.graph.input_types(self.node)

    def input_type(self, index: int) -> TensorType | None:
        return self._types[index] if index < len(self._types) else None

    def input(self, index: int, name: str | None = None) -> Tensor:
        value_type = self._types[index]
        return Tensor(name or f"x{index}", "input", index, value_type, self.dialect.type(value_type.dtype))

    def scratch(self, elements: int, name: str = "partial") -> Tensor:
        """A float buffer of the runtime's (the `scratch` buffer, shared by every kernel in turn) for a
        node whose first kernel leaves results for its second."""
        return Tensor(name, "scratch", 0, TensorType("float32", (elements,)), "float")

    def output(self, index: int = 0, name: str | None = None) -> Tensor:
        value_type = self.node.outputs[index]
        return Tensor(name or (f"y{index}" if index else "y"), "output", index, value_type,
                      self.dialect.type(value_type.dtype))

    @staticmethod
    def index_type(params: list[Tensor], items: int) -> str:
        """The C type wide enough for every element index of `params` and every work item."""
        return "int" if max([p.size for p in params] + [items]) <= INT_LIMIT else "long"

    def kernel(self, template: str, params: list[Tensor], launch: Launch, **values) -> KernelLaunch:
        """Render `template` for `params`; `index` is the C type wide enough for every element index."""
        index = self.index_type(params, math.prod(launch.global_size))
        source = TEMPLATES.get_template(template).render(name=NAME, params=params, index=index, **values)
        return KernelLaunch(source, params, launch)


Check = Callable[[Graph, Node], "str | None"]


@dataclass(frozen=True)
class GpuKernelSpec:
    """How the gpu target compiles one family of ops; `in_place(graph, node)`, when given, names the
    input whose storage the output may take (each element read only to write the same element)."""

    op_types: tuple[str, ...]
    check: Check
    launches: Callable[[GpuContext], list[KernelLaunch]]
    in_place: Callable[[Graph, Node], "int | None"] | None = None


_TABLE = KernelTable("gpu", "compiler.codegen.opencl.kernels", frozenset({"registry"}))


def register_gpu_kernel(spec: GpuKernelSpec) -> GpuKernelSpec:
    return _TABLE.register(spec)


def gpu_kernel_for(node: Node) -> GpuKernelSpec | None:
    return _TABLE.lookup(node)


def supported_op_types() -> list[str]:
    return _TABLE.op_types()


def in_place_input(graph: Graph, node: Node) -> int | None:
    """The memory plan's question: which input may `node`'s output overwrite."""
    return _TABLE.in_place_input(graph, node)


def dtype_problem(node: Node, dtype: str, handled) -> str | None:
    """Why `node` cannot run on `dtype`, or None when `dtype` is among those handled."""
    if dtype in handled:
        return None
    return f"{node.op_type} on {dtype} is not compiled by the gpu target (it handles {', '.join(sorted(handled))})"
