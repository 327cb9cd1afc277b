"""Small GNA programs for tests: one input endpoint, layers, one output endpoint, run on raw ints."""

from __future__ import annotations

import numpy as np

import runtime.gna
from compiler.codegen.gna.encoder import encode
from compiler.codegen.gna.layers import (Activation, Affine, AffineMultiBias, Buffer, Conv1D, Conv2D, Copy, Diagonal,
                                         Endpoint, MaxPool, Program, Pwl, Recurrent, Transpose)
from runtime.gna.format import Section



def buffer_for(name: str, shape, dtype="int16", section=None) -> Buffer:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return Buffer(name, nbytes) if section is None else Buffer(name, nbytes, section)


def program(x: Buffer, x_shape, y: Buffer, y_shape, y_dtype, *layers, generation="GNA2.0") -> Program:
    return Program((Endpoint("x", x, tuple(x_shape), 1.0),),
                   (Endpoint("y", y, tuple(y_shape), 1.0, dtype=y_dtype),), tuple(layers), generation)


def run(prog: Program, x, mode: str = "exact") -> np.ndarray:
    return runtime.gna.load(encode(prog), mode).infer_raw({"x": np.asarray(x, np.int16)})["y"]


def io(x_shape, y_shape, y_dtype="int16") -> tuple[Buffer, Buffer]:
    """Input and output buffers sized for int16 `x_shape` and `y_dtype` `y_shape`."""
    return buffer_for("x", x_shape), buffer_for("y", y_shape, y_dtype)


def run_single(layer, x, y_shape, y_dtype="int16", generation="GNA2.0", mode="exact") -> np.ndarray:
    """Run one layer whose input and output buffers are the endpoints, on int16 `x`."""
    x = np.asarray(x, np.int16)
    return run(program(layer.input, x.shape, layer.output, y_shape, y_dtype, layer, generation=generation), x, mode)


def run_layer(make_layer, x, y_shape, y_dtype="int16", generation="GNA2.0", mode="exact") -> np.ndarray:
    """run_single of make_layer(input buffer, output buffer)."""
    layer = make_layer(*io(np.shape(x), y_shape, y_dtype))
    return run_single(layer, x, y_shape, y_dtype, generation, mode)


def relu(shift: int) -> Pwl:
    """max(x, 0) / 2^shift."""
    return Pwl((-2**31, 0), (0, 0), (0, 1), (0, shift))


def every_op_program(seed: int = 0) -> tuple[Program, dict]:
    """A small speech-like chain using all ten ops (GNA3.0 for CONV2D), and its layers by name.

    x [8, 16] -> conv1d (dilation 2) -> maxpool -> transpose -> copy into 32 padded -> affine (int8)
    -> diagonal (int32) -> pwl -> affine_multibias (bias: the diagonal's output) -> recurrent -> conv2d.
    """
    rng = np.random.default_rng(seed)

    def ints(shape, dtype, bound):
        return rng.integers(-bound, bound, shape, endpoint=True).astype(dtype)

    x, c1, p1, t1, cp = (buffer_for(n, s) for n, s in (("x", (8, 16)), ("c1", (6, 8)), ("p1", (24,)), ("t1", (24,)),
                                                         ("cp", (32,))))
    a1, d1, a2, m1, r1 = (buffer_for(n, s, d) for n, s, d in (("a1", (16,), "int16"), ("d1", (16,), "int32"),
                                                               ("a2", (16,), "int16"), ("m1", (8,), "int16"),
                                                               ("r1", (8,), "int16")))
    y = buffer_for("y", (4,), "int32")
    sigmoid_like = Pwl((-2**31, -4096, 0, 4096), (0, 0, 8192, 16384), (0, 2, 2, 0), (0, 0, 0, 0))
    layers = [
        Conv1D("tdnn", x, c1, ints((8, 2, 16), np.int16, 300), ints(8, np.int32, 5000), pwl=relu(8), length=8,
               dilation=2, out_scale=64.0),
        MaxPool("pool", c1, p1, width=6, channels=8, window=(1, 2), stride=(1, 2)),
        Transpose("interleave", p1, t1, rows=3, columns=8),
        Copy("pad", t1, cp, rows=1, columns=24),
        Affine("fc", cp, a1, ints((16, 32), np.int8, 127), ints(16, np.int32, 10000),
               rng.integers(1, 256, 16).astype(np.uint8), pwl=sigmoid_like),
        Diagonal("scale", a1, d1, ints(16, np.int16, 1000), ints(16, np.int32, 100000)),
        Activation("act", d1, a2, elements=16, pwl=relu(6)),
        AffineMultiBias("fc2", a2, m1, ints((8, 16), np.int16, 200), d1, pwl=relu(10), bias_index=1, bias_stride=2),
        Recurrent("rnn", m1, r1, ints((8, 16), np.int16, 1000), ints(8, np.int32, 1000), pwl=relu(9),
                  state=Buffer("h", 16, Section.STATE)),
        Conv2D("head", r1, y, ints((4, 1, 1, 8), np.int16, 1000), ints(4, np.int32, 1000), height=1, width=1),
    ]
    program = Program((Endpoint("x", x, (8, 16), 512.0, layout="TC"),),
                      (Endpoint("y", y, (4,), 1e4, dtype="int32", layout="C"), Endpoint("r", r1, (8,), 8.0)),
                      tuple(layers), "GNA3.0")
    return program, {layer.name: layer for layer in layers}
