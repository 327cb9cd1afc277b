"""A readable listing of a GNA stream (`kiln disasm`): header, endpoints, layers, PWL tables."""

from __future__ import annotations

from runtime.gna.format import FLAG_INT8_WEIGHTS
from runtime.gna.reader import Stream


def _section(stream: Stream, address: int) -> str:
    return next(s.name for s, (start, size) in stream.sections.items() if start <= address < start + size)


def _operand_line(stream: Stream, operand) -> str:
    stride = f" row_stride {operand.row_stride}" if operand.row_stride is not None else ""
    shape = "x".join(map(str, operand.shape))
    return (f"    {operand.role:<12}{operand.dtype:<6} [{shape}]{stride} @ 0x{operand.address:06x} "
            f"{_section(stream, operand.address)} ({operand.nbytes} B)")


def _pwl_lines(table) -> list[str]:
    row = "      {:>4} {:>12} {:>7} {:>7} {:>5}"
    lines = [f"    pwl         {len(table)} segments", row.format("#", "xBase", "yBase", "slope", "shift")]
    lines += [row.format(i, s["x_base"], s["y_base"], s["slope"], s["shift"]) for i, s in enumerate(table)]
    return lines


def disassemble(stream: Stream) -> str:
    sizes = ", ".join(f"{section.name} {size} B" for section, (_, size) in stream.sections.items())
    lines = [f"GNA stream for {stream.generation}: {len(stream.layers)} layers, {len(stream.inputs)} inputs, "
             f"{len(stream.outputs)} outputs; memory {sizes}"]
    for kind, endpoints in (("input", stream.inputs), ("output", stream.outputs)):
        for e in endpoints:
            layout = f" {e.layout}" if e.layout else ""
            lines.append(f"{kind:<6} {e.name}: {e.dtype} [{'x'.join(map(str, e.shape))}]{layout} row_stride "
                         f"{e.row_stride} @ 0x{e.address:06x} {_section(stream, e.address)} scale {e.scale:g}")
    for layer in stream.layers:
        weights = " int8 weights" if layer.flags & FLAG_INT8_WEIGHTS else ""
        scale = f" out_scale {layer.out_scale:g}" if layer.out_scale else ""
        name = f"  ; {layer.name}" if layer.name else ""
        lines.append(f"layer {layer.index} {layer.op.name}{weights}{scale}{name}")
        lines.append("    params      " + " ".join(f"{name}={value}" for name, value in layer.params.items()))
        lines += [_operand_line(stream, operand) for operand in layer.operands.values()]
        if layer.pwl is not None:
            lines += _pwl_lines(layer.pwl)
    return "\n".join(lines)
