"""A depthwise kiln::BlockedConv (group = C = M) over the blocked channel layout NCHWc.

In NCHWc a depthwise conv needs no broadcast at all: an output pixel's c channels are the sum over the
taps of the input pixel's c channels times that tap's c weights, vector by vector. A work item is
(image, channel block, output row), so results are the same for any thread count. Its register tiles
hold R output columns, one accumulator vector each, carried in registers over the kernel rows inside the
image; each kernel column loads its weight vector once for the tile and one input vector per column.
Columns whose taps reach into the padding are tiled apart with only the taps inside the image
(conv_geometry.column_runs). The bias and the epilogue are applied while the tile is stored.
"""

from __future__ import annotations

from llvmlite import ir

from compiler.codegen.llvm.irhelpers import const_i64, element_type, load, store
from compiler.codegen.llvm.kernels.conv_geometry import ConvGeometry, column_runs
from compiler.codegen.llvm.kernels.gemm_microkernel import carried_loop, fma, load_vector, store_vector
from compiler.codegen.llvm.kernels.linear_algebra import (Epilogue, linear, rolled_range, smax, smin, stack_buffer,
                                                          unravel)

TILE_COLUMNS = 8  # output columns (accumulator vectors) per register tile


def work_items(g: ConvGeometry, lanes: int) -> int:
    return g.batch * g.channels // lanes * g.out_size[0]


def kernel_rows(b: ir.IRBuilder, g: ConvGeometry, first_row: ir.Value) -> tuple[ir.Value, ir.Value]:
    """The kernel rows [low, high) whose input row first_row + kh * dilation lies inside the image."""

    def taps_before(distance):  # ceil(max(distance, 0) / dilation)
        distance = smax(b, distance, const_i64(0))
        return b.udiv(b.add(distance, const_i64(g.dilations[0] - 1)), const_i64(g.dilations[0]))

    high = smin(b, const_i64(g.kernel[0]), taps_before(b.sub(const_i64(g.in_size[0]), first_row)))
    return smin(b, taps_before(b.neg(first_row)), high), high


def emit(builder: ir.IRBuilder, g: ConvGeometry, lanes: int, x, w, bias, y, epilogue: Epilogue | None,
         begin: ir.Value, end: ir.Value) -> None:
    _DepthwiseEmitter(builder, g, lanes, x, w, bias, y, epilogue).run(begin, end)


class _DepthwiseEmitter:
    """Emits one depthwise BlockedConv kernel; see the module docstring."""

    def __init__(self, builder, g: ConvGeometry, lanes: int, x, w, bias, y, epilogue):
        self.b, self.g, self.lanes = builder, g, lanes
        self.x, self.w, self.bias, self.y, self.epilogue = x, w, bias, y, epilogue
        self.scratch = stack_buffer(builder, g.dtype, TILE_COLUMNS * lanes)

    def run(self, begin: ir.Value, end: ir.Value) -> None:
        b, g, lanes = self.b, self.g, self.lanes
        blocks = g.channels // lanes
        with rolled_range(b, begin, end, name="item") as item:
            image, block, row = unravel(b, item, (g.batch, blocks, g.out_size[0]))
            plane = b.add(b.mul(image, const_i64(blocks)), block)  # (image, block) of the input and the output
            first_row = b.sub(b.mul(row, const_i64(g.strides[0])), const_i64(g.pads[0]))
            low, high = kernel_rows(b, g, first_row)
            out_row = linear(b, [plane, row], [g.out_size[0] * g.out_size[1] * lanes, g.out_size[1] * lanes])
            for run in column_runs(g):
                full, rest = divmod(run.count, TILE_COLUMNS)
                if full:
                    with rolled_range(b, 0, full, name="tile") as tile:
                        column = b.add(const_i64(run.first), b.mul(tile, const_i64(TILE_COLUMNS)))
                        self._tile(plane, block, first_row, low, high, out_row, column, TILE_COLUMNS,
                                   run.kernel_columns)
                if rest:
                    self._tile(plane, block, first_row, low, high, out_row,
                               const_i64(run.first + full * TILE_COLUMNS), rest, run.kernel_columns)

    def _tile(self, plane, block, first_row, low, high, out_row, column, count: int, kernel_columns) -> None:
        """Output columns [column, column + count) of the item's row: sums in registers, then the store."""
        b, g, lanes = self.b, self.g, self.lanes
        zero = ir.Constant(ir.VectorType(element_type(g.dtype), lanes), None)

        def kernel_row(t, sums):
            kh = b.add(low, t)
            input_row = linear(b, [plane, b.add(first_row, b.mul(kh, const_i64(g.dilations[0])))],
                               [g.in_size[0] * g.in_size[1], g.in_size[1]])
            for k in kernel_columns:
                weights = load_vector(b, self.w, g.dtype, b.mul(linear(b, [block, kh], [g.kernel[0] * g.kernel[1],
                                                                                       g.kernel[1]], const_i64(k)),
                                                                const_i64(lanes)), lanes, aligned=True)
                for r in range(count):
                    pixel = b.add(input_row, b.add(b.mul(column, const_i64(g.strides[1])),
                                                   const_i64(r * g.strides[1] + k * g.dilations[1] - g.pads[1])))
                    value = load_vector(b, self.x, g.dtype, b.mul(pixel, const_i64(lanes)), lanes, aligned=True)
                    sums[r] = fma(b, value, weights, sums[r])
            return sums

        sums = carried_loop(b, b.sub(high, low), [zero] * count, kernel_row)
        for r, value in enumerate(sums):
            store_vector(b, value, self.scratch, g.dtype, const_i64(r * lanes), aligned=True)
        with rolled_range(b, 0, count, name="out_column") as r:
            with rolled_range(b, 0, lanes, name="lane") as lane:
                value = load(b, self.scratch, g.dtype, linear(b, [r, lane], [lanes, 1]))
                if self.bias is not None:
                    value = b.fadd(value, load(b, self.bias, g.dtype, linear(b, [block, lane], [lanes, 1])))
                at = linear(b, [b.add(column, r), lane], [lanes, 1])
                if self.epilogue is not None:
                    value = self.epilogue(b, value, out_row, at)
                store(b, value, self.y, g.dtype, b.add(out_row, at))
