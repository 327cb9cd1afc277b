"""docs/gna-isa.md written out as plain Python: one loop per sum, Python integers, no numpy maths.

Obviously correct and slow on purpose: the oracle the vectorized executor is compared with, bit
for bit. Layers are the compiler's dataclasses (compiler/codegen/gna/layers.py); data are nested
lists of ints.
"""

from __future__ import annotations


def sat(value: int, bits: int) -> int:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return min(max(value, low), high)


def rshift_round(value: int, shift: int) -> int:
    """floor((v + 2^(s-1)) / 2^s); Python's >> on ints is a floor division by 2^s."""
    return value if shift == 0 else (value + (1 << (shift - 1))) >> shift


def pwl(x: int, table) -> int:
    index = 0
    for i, x_base in enumerate(table.x_base):
        if x_base <= x:
            index = i
    d = x - table.x_base[index]
    return sat(table.y_base[index] + rshift_round(d * table.slope[index], table.shift[index]), 16)


def _finish(layer, total: int) -> int:
    acc = sat(total, 32)
    return acc if layer.pwl is None else pwl(acc, layer.pwl)


def weight(layer, row: int, *rest: int) -> int:
    value = int(layer.weights[(row, *rest)])
    if layer.multipliers is not None:
        value *= int(layer.multipliers[row])
    return value


def affine(layer, x, bias=None):
    """bias: the [outputs, bias_stride] matrix of AFFINE_MULTIBIAS when it lives in a buffer."""
    p = layer.params()
    out = []
    for b in range(p["batch"]):
        row = []
        for n in range(p["outputs"]):
            total = sum(x[b][k] * weight(layer, n, k) for k in range(p["inputs"]))
            if "bias_index" in p:
                matrix = layer.bias if bias is None else bias
                total += int(matrix[n][p["bias_index"]])
            else:
                total += int(layer.bias[n])
            row.append(_finish(layer, total))
        out.append(row)
    return out


def diagonal(layer, x):
    p = layer.params()
    return [[_finish(layer, x[b][k] * weight(layer, k) + int(layer.bias[k])) for k in range(p["elements"])]
            for b in range(p["batch"])]


def recurrent(layer, x, state):
    """(outputs of every frame, the state afterwards)."""
    p = layer.params()
    previous, out = list(state), []
    for t in range(p["frames"]):
        h = []
        for n in range(p["outputs"]):
            total = sum(x[t][k] * weight(layer, n, k) for k in range(p["inputs"]))
            total += sum(previous[j] * weight(layer, n, p["inputs"] + j) for j in range(p["outputs"]))
            h.append(_finish(layer, total + int(layer.bias[n])))
        out.append(h)
        previous = h
    return out, previous


def _padded(x, height, width, top, left):
    def value(i, j, c):
        i, j = i - top, j - left
        return x[i][j][c] if 0 <= i < height and 0 <= j < width else 0
    return value


def conv2d(layer, x):
    """x: [height][width][channels]; output [oh][ow][filters]."""
    p = layer.params()
    xp = _padded(x, p["height"], p["width"], p["pad_top"], p["pad_left"])
    out_h = (p["height"] + p["pad_top"] + p["pad_bottom"] - p["dilation_h"] * (p["kernel_h"] - 1) - 1) \
        // p["stride_h"] + 1
    out_w = (p["width"] + p["pad_left"] + p["pad_right"] - p["dilation_w"] * (p["kernel_w"] - 1) - 1) \
        // p["stride_w"] + 1
    out = []
    for oh in range(out_h):
        line = []
        for ow in range(out_w):
            pixel = []
            for f in range(p["filters"]):
                total = int(layer.bias[f])
                for i in range(p["kernel_h"]):
                    for j in range(p["kernel_w"]):
                        for c in range(p["channels"]):
                            row = oh * p["stride_h"] + i * p["dilation_h"]
                            column = ow * p["stride_w"] + j * p["dilation_w"]
                            total += xp(row, column, c) * weight(layer, f, i, j, c)
                pixel.append(_finish(layer, total))
            line.append(pixel)
        out.append(line)
    return out


def conv1d(layer, x):
    """x: [length][channels]; output [out_length][filters]."""
    p = layer.params()
    xp = _padded([x], 1, p["length"], 0, p["pad_begin"])
    out_length = (p["length"] + p["pad_begin"] + p["pad_end"] - p["dilation"] * (p["kernel"] - 1) - 1) \
        // p["stride"] + 1
    out = []
    for t in range(out_length):
        row = []
        for f in range(p["filters"]):
            total = int(layer.bias[f])
            for j in range(p["kernel"]):
                for c in range(p["channels"]):
                    total += xp(0, t * p["stride"] + j * p["dilation"], c) * weight(layer, f, j, c)
            row.append(_finish(layer, total))
        out.append(row)
    return out


def maxpool(layer, x):
    p = layer.params()
    out_h = (p["height"] - p["window_h"]) // p["stride_h"] + 1
    out_w = (p["width"] - p["window_w"]) // p["stride_w"] + 1
    return [[[max(x[oh * p["stride_h"] + i][ow * p["stride_w"] + j][c]
                  for i in range(p["window_h"]) for j in range(p["window_w"]))
              for c in range(p["channels"])] for ow in range(out_w)] for oh in range(out_h)]


def activation(layer, x):
    return [pwl(value, layer.pwl) for value in x]


def copy(layer, source, destination):
    """source and destination: flat lists; returns the destination after the copy."""
    p = layer.params()
    result = list(destination)
    for r in range(p["rows"]):
        for c in range(p["columns"]):
            result[r * p["out_stride"] + c] = source[r * p["in_stride"] + c]
    return result


def transpose(layer, x):
    p = layer.params()
    return [[x[r][c] for r in range(p["rows"])] for c in range(p["columns"])]
