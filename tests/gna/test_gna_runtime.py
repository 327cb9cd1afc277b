"""GNA artifacts through runtime.load and `kiln disasm`; traces; the runtime stays numpy-only."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runtime
import runtime.gna
from compiler.cli import EXIT_ERROR, EXIT_OK, main
from compiler.codegen.gna.encoder import encode, gna_artifact
from compiler.codegen.gna.layers import Diagonal, Endpoint, Program
from runtime import ArtifactError
from tests.gna.harness import every_op_program, io
from tests.models.builders import mlp_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stream():
    return encode(every_op_program()[0])


def test_runtime_load_runs_a_gna_artifact_like_the_stream(stream, tmp_path):
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    expected = runtime.gna.load(stream).infer({"x": x})
    artifact = gna_artifact(stream)
    for source in (artifact, artifact.save(tmp_path / "m.kiln")):
        model = runtime.load(source)
        assert model.target == "gna" and [(i.name, i.shape) for i in model.inputs] == [("x", (8, 16))]
        outputs = model.infer({"x": x})
        assert outputs.keys() == expected.keys()
        for name in expected:
            np.testing.assert_array_equal(outputs[name], expected[name])
    assert runtime.gna.load(tmp_path / "m.kiln").infer({"x": x})["y"].tolist() == expected["y"].tolist()


def test_a_manifest_that_disagrees_with_the_stream_is_refused(stream, tmp_path):
    path = gna_artifact(stream).save(tmp_path / "m.kiln")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["inputs"][0]["type"]["shape"] = [8, 15]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="do not match the stream's endpoints"):
        runtime.load(path)


def test_trace_gives_every_layer_output_and_its_saturation_count():
    source, target = io((1, 8), (1, 8), "int32")
    layer = Diagonal("d", source, target, np.full(8, 32767, np.int16), np.array([2**31 - 1] + [0] * 7, np.int32))
    model = runtime.gna.load(encode(Program((Endpoint("x", source, (1, 8), 1.0),),
                                            (Endpoint("y", target, (1, 8), 1.0, dtype="int32"),), (layer,))))
    x = np.array([[1, -32768, 0, 0, 0, 0, 0, 0]], np.int16)
    outputs, traces = model.trace({"x": x}, raw=True)
    # element 0: 32767 + 2^31 - 1 saturates high; element 1: -32768 * 32767 = -1073709056 does not
    assert traces[0].saturated == 1 and traces[0].output.tolist() == outputs["y"].tolist()
    assert outputs["y"].tolist()[0][:2] == [2**31 - 1, -1073709056]
    assert runtime.gna.load(model.stream, "fp32").trace({"x": x}, raw=True)[1][0].saturated is None


def test_disasm_lists_header_endpoints_layers_and_pwl_tables(stream, tmp_path, capsys):
    path = gna_artifact(stream).save(tmp_path / "m.kiln")
    assert main(["disasm", str(path)]) == EXIT_OK
    text = capsys.readouterr().out
    assert text.startswith("GNA stream for GNA3.0: 10 layers, 1 inputs, 2 outputs")
    for line in ("input  x: int16 [8x16] TC row_stride 16", "layer 0 CONV1D out_scale 64  ; tdnn",
                 "length=8 channels=16 filters=8 kernel=2 stride=1 dilation=2", "layer 4 AFFINE int8 weights  ; fc",
                 "multipliers uint8  [16]", "pwl         4 segments", "bias_stride=2 bias_index=1",
                 "state       int16  [8] @", "STATE (16 B)", "layer 9 CONV2D  ; head"):
        assert line in text
    (tmp_path / "model.gna").write_bytes(stream)
    assert main(["disasm", str(tmp_path / "model.gna")]) == EXIT_OK
    assert capsys.readouterr().out == text


def test_disasm_errors_are_one_line(stream, tmp_path, capsys):
    (tmp_path / "bad.gna").write_bytes(stream[:-1])
    assert main(["disasm", str(tmp_path / "bad.gna")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "kiln disasm: error:" in err and "truncated" in err and "Traceback" not in err
    import compiler

    cpu_like = compiler.compile(mlp_model()).save(tmp_path / "ref.kiln")
    assert main(["disasm", str(cpu_like)]) == EXIT_ERROR
    assert "is a 'ref' artifact, not a gna one" in capsys.readouterr().err


def test_runtime_gna_imports_only_numpy_and_the_standard_library():
    code = ("import sys, runtime, runtime.gna, runtime.gna.disasm; bad = [m for m in ('compiler', 'frontends', "
            "'networkx', 'onnx', 'llvmlite', 'jinja2') if m in sys.modules]; print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
