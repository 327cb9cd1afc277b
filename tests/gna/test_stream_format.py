"""The stream format: encoder/reader round trip, determinism, and damaged or illegal streams refused
with errors that name the layer and the rule."""

import struct

import numpy as np
import pytest

import runtime.gna
from compiler.codegen.gna.encoder import GnaEncodeError, encode
from compiler.codegen.gna.layers import Affine, Conv1D, Conv2D, Diagonal, Endpoint, MaxPool, Program, Pwl, Recurrent
from runtime.gna import GnaFormatError, read_stream
from runtime.gna.format import EndpointRecord, Header, LayerRecord, pack, unpack
from runtime.gna.memory import Memory
from tests.gna import spec_reference as spec
from tests.gna.harness import every_op_program, io, program, run_layer

LAYER_TABLE = Header.STRUCT.size + 3 * EndpointRecord.STRUCT.size  # every_op_program has 3 endpoints


@pytest.fixture(scope="module")
def encoded():
    program, layers = every_op_program()
    return program, layers, encode(program)


def test_round_trip_keeps_every_field(encoded):
    program, _, data = encoded
    stream = read_stream(data)
    assert stream.generation == program.generation
    for endpoint, decoded in zip((*program.inputs, *program.outputs), (*stream.inputs, *stream.outputs)):
        assert (decoded.name, decoded.shape, decoded.scale, decoded.layout, decoded.dtype) == \
            (endpoint.name, endpoint.shape, endpoint.scale, endpoint.layout, endpoint.dtype)
    memory = Memory(stream, exact=True)
    for layer, decoded in zip(program.layers, stream.layers):
        assert (decoded.op, decoded.name, decoded.out_scale) == (layer.OP, layer.name, getattr(layer, "out_scale", 0))
        assert list(decoded.params.items()) == list(layer.params().items())  # same names, same order as the ISA
        for role, value in layer.operands().items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(memory.constant(decoded.operands[role]), value)
        pwl = getattr(layer, "pwl", None)
        assert (decoded.pwl is None) == (pwl is None)
        if pwl is not None:
            assert decoded.pwl.tobytes() == pwl.segments().tobytes()


def test_records_pack_back_to_the_same_bytes(encoded):
    data = encoded[2]
    header = unpack(Header, data, 0)
    assert pack(header) == data[:Header.STRUCT.size]
    for i in range(3):
        at = Header.STRUCT.size + i * EndpointRecord.STRUCT.size
        assert pack(unpack(EndpointRecord, data, at)) == data[at:at + EndpointRecord.STRUCT.size]
    for i in range(header.layer_count):
        at = LAYER_TABLE + i * LayerRecord.STRUCT.size
        assert pack(unpack(LayerRecord, data, at)) == data[at:at + LayerRecord.STRUCT.size]


def test_encoding_is_deterministic_and_shares_identical_constants(encoded):
    assert encode(encoded[0]) == encoded[2]
    weights = np.ones((8, 8), np.int16)
    source, target = io((1, 8), (1, 8), "int32")
    first = Affine("a", source, target, weights, np.zeros(8, np.int32))
    second = Affine("b", source, target, weights.copy(), np.zeros(8, np.int32))
    one, two = (read_stream(encode(program(source, (1, 8), target, (1, 8), "int32", *layers)))
                for layers in ((first,), (first, second)))
    assert len(two.const) == len(one.const)
    assert two.layers[1].operands["weights"].address == two.layers[0].operands["weights"].address


def test_every_op_program_runs_like_the_spec(encoded):
    program, layers, data = encoded
    model = runtime.gna.load(data)
    rng = np.random.default_rng(3)
    state = [0] * 8
    for _ in range(2):  # twice: the recurrent state carries over
        x = rng.integers(-2000, 2000, (8, 16)).astype(np.int16)
        c1 = spec.conv1d(layers["tdnn"], x.tolist())
        p1 = spec.maxpool(layers["pool"], [c1])
        t1 = spec.transpose(layers["interleave"], p1[0])
        cp = spec.copy(layers["pad"], sum(t1, []), [0] * 32)
        a1 = spec.affine(layers["fc"], [cp])
        d1 = spec.diagonal(layers["scale"], a1)
        a2 = spec.activation(layers["act"], d1[0])
        m1 = spec.affine(layers["fc2"], [a2], bias=np.reshape(d1[0], (8, 2)).tolist())
        r1, state = spec.recurrent(layers["rnn"], m1, state)
        y = spec.conv2d(layers["head"], [r1])
        out = model.infer_raw({"x": x})
        assert out["y"].tolist() == y[0][0] and out["r"].tolist() == r1[0]


def _patched(data: bytes, offset: int, fmt: str, value) -> bytes:
    patched = bytearray(data)
    struct.pack_into(fmt, patched, offset, value)
    return bytes(patched)


LAYER_FIELDS = {name: 4 * i + 4 for i, name in enumerate(
    ("name_offset", "name_bytes", "pwl_first", "pwl_count", "input", "output", "weights", "bias"))}


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-1], "truncated"),
    (lambda d: d[:40], "truncated or not a GNA stream"),
    (lambda d: b"NOTGNA\0\0" + d[8:], "not a Kiln GNA stream"),
    (lambda d: _patched(d, 8, "<H", 9), "format version 9"),
    (lambda d: _patched(d, 12, "8s", b"GNA9.9"), "unknown target generation"),
    (lambda d: _patched(d, 60, "<I", 1), "reserved bytes"),
    (lambda d: _patched(d, LAYER_TABLE, "<B", 42), "layer 0 'tdnn': unknown opcode 42"),
    (lambda d: _patched(d, LAYER_TABLE + LAYER_FIELDS["input"], "<I", 1 << 30),
     r"layer 0 'tdnn' \(CONV1D\): the input address 1073741824 is outside memory"),
    (lambda d: _patched(d, LAYER_TABLE + LAYER_FIELDS["weights"], "<I", 64 + 2),
     r"layer 0 'tdnn' \(CONV1D\): the weights address 66 is not 64-byte aligned"),
    (lambda d: _patched(d, LAYER_TABLE + LAYER_FIELDS["output"], "<I", 0),
     r"layer 0 'tdnn' \(CONV1D\): the output lies in the CONST section; it must lie in STATE or WORK"),
    (lambda d: _patched(d, LAYER_TABLE + LAYER_FIELDS["weights"], "<I", 2048 - 64),
     r"the weights \(int16 \[8, 2, 16\], 512 bytes at 1984\) runs past the end of the CONST section \[0, 2048\)"),
    (lambda d: _patched(d, LAYER_TABLE + LAYER_FIELDS["pwl_count"], "<I", 129),
     r"layer 0 'tdnn' \(CONV1D\): the PWL table has 129 segments; at most 128"),
    (lambda d: _patched(d, LAYER_TABLE + LAYER_FIELDS["pwl_first"], "<I", 10_000), "lie outside the segment table"),
    (lambda d: _patched(d, LAYER_TABLE + LAYER_FIELDS["name_bytes"], "<I", 10_000), "outside the string table"),
    (lambda d: _patched(d, LAYER_TABLE + 48 + 4 * 15, "<I", 1), "parameters after the 8 CONV1D uses must be 0"),
    (lambda d: _patched(d, LAYER_TABLE + 48 + 4 * 2, "<I", 6), "filters is 6; it must be a multiple of 4"),
    (lambda d: _patched(d, LAYER_TABLE + 1, "<B", 4), "flags 0x04 are not valid for CONV1D"),
])
def test_damaged_streams_are_refused_clearly(encoded, damage, message):
    with pytest.raises(GnaFormatError, match=message):
        read_stream(damage(encoded[2]))


def test_pwl_rules_are_checked():
    bad = Pwl((5, 5), (0, 0), (1, 1), (0, 0))
    with pytest.raises(GnaEncodeError, match=r"layer 0 'act' \(DIAGONAL\): PWL xBase values \[5, 5\] must be strictly"):
        run_layer(lambda s, t: Diagonal("act", s, t, np.ones(8, np.int16), np.zeros(8, np.int32), pwl=bad),
                  [np.zeros(8)], (1, 8))
    too_many = Pwl(*(tuple(range(129)),) * 3, (0,) * 129)
    with pytest.raises(GnaEncodeError, match="129 segments; at most 128"):
        run_layer(lambda s, t: Diagonal("act", s, t, np.ones(8, np.int16), np.zeros(8, np.int32), pwl=too_many),
                  [np.zeros(8)], (1, 8))
    with pytest.raises(GnaEncodeError, match="shift above 47"):
        run_layer(lambda s, t: Diagonal("act", s, t, np.ones(8, np.int16), np.zeros(8, np.int32),
                                        pwl=Pwl((0,), (0,), (1,), (48,))), [np.zeros(8)], (1, 8))


@pytest.mark.parametrize("make, x_shape, y_shape, message", [
    (lambda s, t: Affine("fc", s, t, np.ones((8, 12), np.int16), np.zeros(8, np.int32)), (1, 12), (1, 8),
     r"layer 0 'fc' \(AFFINE\): inputs is 12; it must be a positive multiple of 8"),
    (lambda s, t: Affine("fc", s, t, np.ones((8, 8), np.int16), np.zeros(8, np.int32), batch=9), (9, 8), (9, 8),
     "batch is 9; it must be 1 to 8"),
    (lambda s, t: Affine("fc", s, t, np.ones((8, 8), np.int8), np.zeros(8, np.int32)), (1, 8), (1, 8),
     "int8 weights need uint8 multipliers"),
    (lambda s, t: Affine("fc", s, t, np.ones((8, 8), np.float32), np.zeros(8, np.int32)), (1, 8), (1, 8),
     "weights must be a numpy array of int16 or int8, got float32"),
    (lambda s, t: Affine("fc", s, t, np.ones((16, 8), np.int16), np.zeros(16, np.int32)), (1, 8), (1, 8),
     "the output .* does not fit buffer 'y' of 32 bytes"),
    (lambda s, t: Affine("fc", s, t, np.ones((8, 8), np.int16), np.zeros(7, np.int32)), (1, 8), (1, 8),
     r"bias has shape \[7\]; with parameters .* it must be \[8\]"),
    (lambda s, t: Conv1D("c", s, t, np.ones((6, 8, 1), np.int16), np.zeros(6, np.int32), length=8), (8, 1), (1, 6),
     "filters is 6; it must be a multiple of 4"),
    (lambda s, t: Conv1D("c", s, t, np.ones((4, 3, 1), np.int16), np.zeros(4, np.int32), length=8), (8, 1), (6, 4),
     r"the filter size \(kernel · channels\) is 3"),
    (lambda s, t: Conv1D("c", s, t, np.ones((4, 8, 1), np.int16), np.zeros(4, np.int32), length=8, dilation=2),
     (8, 1), (1, 4), "the dilated kernel"),
    (lambda s, t: Conv2D("c", s, t, np.ones((4, 1, 1, 8), np.int16), np.zeros(4, np.int32), height=1, width=1),
     (1, 1, 8), (1, 1, 4), "CONV2D needs generation GNA3.0"),
    (lambda s, t: Recurrent("r", s, t, np.ones((8, 16), np.int16), np.zeros(8, np.int32), state=t), (1, 8), (1, 8),
     "RECURRENT needs a PWL table"),
    (lambda s, t: MaxPool("p", s, t, height=2, width=2, channels=2, window=(2, 2)), (2, 2, 2), (1, 1, 2),
     r"2-D pooling \(height, window_h or stride_h above 1\) needs generation GNA3.0"),
])
def test_illegal_layers_name_the_layer_and_the_rule(make, x_shape, y_shape, message):
    with pytest.raises(GnaEncodeError, match=message):
        run_layer(make, np.zeros(x_shape), y_shape, "int32")


def test_recurrent_output_may_not_overlap_its_state():
    source, target = io((1, 8), (1, 8))
    layer = Recurrent("r", source, target, np.ones((8, 16), np.int16), np.zeros(8, np.int32),
                      pwl=Pwl((0,), (0,), (1,), (0,)), state=target)
    with pytest.raises(GnaEncodeError, match="the output overlaps the state"):
        encode(program(source, (1, 8), target, (1, 8), "int16", layer))


def test_endpoint_rules_are_checked():
    source, target = io((1, 8), (1, 8), "int32")
    layer = Diagonal("d", source, target, np.ones(8, np.int16), np.zeros(8, np.int32))
    for inputs, outputs, message in [
        ((Endpoint("x", source, (1, 8), 1.0, layout="NCHW"),), (Endpoint("y", target, (1, 8), 1.0, dtype="int32"),),
         r"input endpoint 'x': layout 'NCHW' must be empty or one ASCII letter per dim \(rank 2\)"),
        ((Endpoint("x", source, (1, 8), 0.0),), (Endpoint("y", target, (1, 8), 1.0, dtype="int32"),),
         "scale factor 0.0 must be finite and above 0"),
        ((Endpoint("x", source, (1, 8), 1.0, dtype="int32"),), (Endpoint("y", target, (1, 8), 1.0, dtype="int32"),),
         "inputs are int16"),
        ((Endpoint("x", source, (1, 8), 1.0),), (Endpoint("x", target, (1, 8), 1.0, dtype="int32"),),
         "name 'x' is empty or used twice"),
    ]:
        with pytest.raises(GnaEncodeError, match=message):
            encode(Program(inputs, outputs, (layer,)))


def test_refs_must_point_inside_their_buffer():
    source, target = io((1, 8), (1, 8), "int32")
    layer = Diagonal("d", source, target.at(64), np.ones(8, np.int16), np.zeros(8, np.int32))
    with pytest.raises(GnaEncodeError, match="a Ref must point inside its buffer"):
        encode(program(source, (1, 8), target, (1, 8), "int32", layer))
