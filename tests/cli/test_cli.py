"""The kiln command: compile, info, run, check; failures are one clear line, never a traceback."""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper

from compiler.cli import EXIT_ERROR, EXIT_OK, EXIT_UNSUPPORTED, main
from tests.models.builders import mlp_model


def write_model(tmp_path, model, name="model.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


def test_compile_info_run(tmp_path, capsys):
    model = write_model(tmp_path, mlp_model(batch=2))
    artifact = str(tmp_path / "mlp.kiln")
    assert main(["compile", model, "-o", artifact, "--time-passes"]) == EXIT_OK
    assert "pass timings" in capsys.readouterr().out
    assert main(["info", artifact]) == EXIT_OK
    assert "input  x" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    assert main(["run", artifact, "--input", f"x={tmp_path / 'x.npy'}", "-n", "3"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "output y: float32[2, 3]" in out and "median of 3" in out


def test_compile_dumps_text_and_dot(tmp_path):
    model = write_model(tmp_path, mlp_model())
    dump = tmp_path / "dump"
    assert main(["compile", model, "-o", str(tmp_path / "m.kiln"), "--dump-after", "all",
                 "--dump-dir", str(dump), "--dump-format", "text,dot", "--verify-each"]) == EXIT_OK
    assert sorted(p.suffix for p in dump.iterdir()) and any(p.suffix == ".dot" for p in dump.iterdir())


def test_bad_model_is_one_line_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"garbage")
    assert main(["compile", str(path), "-o", str(tmp_path / "x.kiln")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "kiln compile: error: could not parse" in err and "Traceback" not in err


def test_run_needs_inputs_for_symbolic_dims(tmp_path, capsys):
    model = write_model(tmp_path, mlp_model())
    assert main(["run", model]) == EXIT_ERROR
    assert "give it with --input x=FILE.npy" in capsys.readouterr().err


def test_check_lists_every_unsupported_op(tmp_path, capsys):
    nodes = [helper.make_node("Mystery", ["x"], ["a"], domain="com.example", name="m1"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = write_model(tmp_path, model)
    assert main(["check", path, "--json"]) == EXIT_UNSUPPORTED
    report = json.loads(capsys.readouterr().out)
    assert report["targets"] == {"ref": [{"node": "m1", "op": "com.example::Mystery",
                                          "reason": "no definition at opset 1"}]}
    assert main(["check", write_model(tmp_path, mlp_model(), "ok.onnx")]) == EXIT_OK


def test_check_all_targets_says_which_supports_what(tmp_path, capsys):
    """A symbolic batch is fine for the ref interpreter; the compiled targets ask for static shapes."""
    assert main(["check", write_model(tmp_path, mlp_model(), "mlp.onnx"), "--target", "all", "--json"]) \
        == EXIT_UNSUPPORTED
    report = json.loads(capsys.readouterr().out)["targets"]
    assert set(report) >= {"ref", "cpu", "gpu", "gna"}
    assert report["ref"] == []
    assert all("static" in report[target][0]["reason"] for target in ("cpu", "gpu", "gna"))


def test_devices_lists_the_cpu_and_the_gna_executor(capsys):
    assert main(["devices", "--json"]) == EXIT_OK
    devices = json.loads(capsys.readouterr().out)
    assert devices[0]["target"] == "cpu" and devices[0]["details"]["cores"] >= 1
    assert devices[-1]["target"] == "gna" and "GNA2.0" in devices[-1]["details"]["generations"]
    assert all(d["selector"] for d in devices if d["target"] == "gpu")


def test_cpu_compile_info_run_with_output_dir(tmp_path, capsys):
    model = write_model(tmp_path, mlp_model(batch=2))
    artifact = str(tmp_path / "mlp.kiln")
    assert main(["compile", model, "--target", "cpu", "-o", artifact]) == EXIT_OK
    assert main(["info", artifact]) == EXIT_OK
    assert "memory plan: peak workspace" in capsys.readouterr().out
    assert main(["run", artifact, "--threads", "1", "--output-dir", str(tmp_path / "out")]) == EXIT_OK
    saved = np.load(tmp_path / "out" / "y.npy")
    assert saved.shape == (2, 3) and saved.dtype == np.float32


def test_compile_with_a_static_shape_for_a_symbolic_batch(tmp_path, capsys):
    model = write_model(tmp_path, mlp_model())
    artifact = str(tmp_path / "mlp.kiln")
    assert main(["compile", model, "-o", artifact, "--target", "cpu", "--shape", "x=5,4"]) == EXIT_OK
    assert main(["run", artifact]) == EXIT_OK
    assert "output y: float32[5, 3]" in capsys.readouterr().out
    assert main(["compile", model, "-o", artifact, "--shape", "x=5,7"]) == EXIT_ERROR
    assert "axis 1 is fixed to 4" in capsys.readouterr().err
    assert main(["compile", model, "-o", artifact, "--shape", "x=five"]) == EXIT_ERROR
    assert "use NAME=D0,D1" in capsys.readouterr().err
