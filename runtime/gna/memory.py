"""The stream's memory (docs/gna-isa.md, section 2) and typed numpy views of its operands.

CONST is read from the stream's bytes; STATE and WORK are `cells`. In exact mode a cell is a
byte, as the ISA describes. In fp32 mode every 2 bytes become one float32 cell (an int32 element
uses the first of its two), so the compiler's buffer aliasing means the same in both modes.
"""

from __future__ import annotations

import numpy as np

from runtime.gna.format import Section
from runtime.gna.isa import Operand
from runtime.gna.reader import Stream


class Memory:
    def __init__(self, stream: Stream, exact: bool):
        self.exact = exact
        self.sections = stream.sections
        self.const = np.frombuffer(stream.const, np.uint8)
        self.base = len(stream.const)  # the address of cells[0]
        size = stream.state_bytes + stream.work_bytes
        self.cells = np.zeros(size, np.uint8) if exact else np.zeros(size // 2, np.float32)
        self.cell_bytes = 1 if exact else 2

    def section_of(self, operand: Operand) -> Section:
        return next(s for s, (start, size) in self.sections.items() if start <= operand.address < start + size)

    def constant(self, operand: Operand) -> np.ndarray:
        """A CONST operand's integer values (read-only)."""
        flat = self.const[operand.address: operand.address + operand.nbytes].view(operand.dtype)
        return flat.reshape(operand.shape)

    def view(self, operand: Operand) -> np.ndarray:
        """A writable view of a STATE or WORK operand: its integer dtype (exact) or float32 (fp32)."""
        itemsize = np.dtype(operand.dtype).itemsize
        start = (operand.address - self.base) // self.cell_bytes
        if self.exact:
            flat = self.cells[start: start + operand.nbytes].view(operand.dtype)
        else:
            flat = self.cells[start: start + operand.nbytes // 2: itemsize // 2]
        if operand.row_stride is None:
            return flat.reshape(operand.shape)
        step = flat.strides[0]
        return np.lib.stride_tricks.as_strided(flat, operand.shape, (operand.row_stride * step, step))

    def read(self, operand: Operand) -> np.ndarray:
        """The operand's current values wherever it lies (a constant, or a live view)."""
        return self.constant(operand) if self.section_of(operand) == Section.CONST else self.view(operand)

    def clear(self, section: Section) -> None:
        start, size = self.sections[section]
        self.cells[(start - self.base) // self.cell_bytes: (start + size - self.base) // self.cell_bytes] = 0
