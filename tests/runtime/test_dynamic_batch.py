"""One cpu artifact for a bounded dynamic batch (shapes={"x": ["1..4", ...]}, --shape x=1..4,...): every
batch size in the bounds matches ONNX Runtime, the signature shows the batch with its bounds, and
what cannot run with a dynamic batch is refused by name."""

from __future__ import annotations

import ctypes

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from bench.models import bert_encoder
from compiler.cli import EXIT_OK, main
from compiler.dynamic_batch import DynamicBatchError
from runtime import InputError

RNG = np.random.default_rng(0)


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def encoder():
    return bert_encoder(layers=1, sequence=16, dynamic=True)


@pytest.fixture(scope="module")
def encoder_model(encoder, tmp_path_factory):
    artifact = compiler.compile(encoder.model, target="cpu",
                                shapes={"input_ids": ["1..4", 16], "attention_mask": ["1..4", 16]})
    return runtime.load(artifact.save(tmp_path_factory.mktemp("dyn") / "encoder.kiln"), num_threads=2)


def assert_encoder_matches_onnxruntime(encoder, model) -> None:
    """The 1..4 dynamic-batch encoder `model` (any target) at batch sizes up, down and at the bound."""
    session = _session(encoder.model)
    for batch in (1, 3, 4, 2, 1):
        feeds = encoder.make_inputs(np.random.default_rng(batch), batch=batch, sequence=16)
        got = next(iter(model.infer(feeds).values()))
        assert got.shape == (batch, 16, 256)
        np.testing.assert_allclose(got, session.run(None, feeds)[0], rtol=1e-3, atol=1e-4)


def test_encoder_matches_onnxruntime_at_every_batch_size(encoder, encoder_model):
    assert_encoder_matches_onnxruntime(encoder, encoder_model)


def test_signature_shows_the_batch_and_its_bounds(encoder_model):
    ids = next(info for info in encoder_model.inputs if info.name == "input_ids")
    assert ids.shape == ("batch", 16) and ids.bounds == ((1, 4), None)
    assert encoder_model.outputs[0].shape[0] == "batch" and encoder_model.outputs[0].bounds[0] == (1, 4)


def test_sizes_outside_the_bounds_are_refused(encoder, encoder_model):
    with pytest.raises(InputError, match=r"outside the sizes 1\.\.4"):
        encoder_model.infer(encoder.make_inputs(RNG, batch=5, sequence=16))
    feeds = encoder.make_inputs(RNG, batch=2, sequence=16)
    feeds["attention_mask"] = feeds["attention_mask"][:1]
    with pytest.raises(InputError, match="inputs sharing a dim name must agree"):
        encoder_model.infer(feeds)


def _cnn(batch_dim="N"):
    """Conv+BN+Relu, a depthwise conv, a residual Add, MaxPool, GlobalAveragePool, Flatten, Gemm, Softmax."""
    f = lambda *shape: (RNG.standard_normal(shape) * 0.3).astype(np.float32)  # noqa: E731
    initializers = {"w1": f(8, 3, 3, 3), "b1": f(8), "gamma": f(8) + 1, "beta": f(8), "mean": f(8),
                    "var": np.abs(f(8)) + 0.5, "dw": f(8, 1, 3, 3), "fc": f(10, 8), "fc_b": f(10)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["a1"]),
             helper.make_node("Conv", ["a1", "dw"], ["d1"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Add", ["d1", "a1"], ["s1"]),
             helper.make_node("MaxPool", ["s1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p1"], ["g"]),
             helper.make_node("Flatten", ["g"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           [batch_dim, 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 10])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cnn_matches_onnxruntime_at_every_batch_size():
    model = _cnn()
    executable = runtime.load(compiler.compile(model, target="cpu", shapes={"x": ["1..5", 3, 12, 12]}))
    session = _session(model)
    for batch in (5, 1, 2, 4):
        x = RNG.standard_normal((batch, 3, 12, 12)).astype(np.float32)
        np.testing.assert_allclose(executable.infer({"x": x})["y"], session.run(None, {"x": x})[0],
                                   rtol=1e-4, atol=1e-6)


def test_entries_past_the_batch_do_not_reach_the_first_ones(tmp_path):
    """kiln_run_batch called from C-like code with NaN in the input entries past the batch: the first
    entries are exact, so no kernel mixes entries (those running every item compute the NaN rows apart)."""
    model = _cnn()
    path = compiler.compile(model, target="cpu", shapes={"x": ["1..4", 3, 12, 12]}).save(tmp_path / "cnn.kiln")
    library = ctypes.CDLL(str(path / "model.so"))
    manifest = runtime.load(path).manifest
    weights = np.fromfile(path / "weights.bin", dtype=np.uint8)
    workspace = np.zeros(manifest["memory_plan"]["workspace_bytes"], np.uint8)
    x = np.full((4, 3, 12, 12), np.nan, np.float32)
    x[:2] = RNG.standard_normal((2, 3, 12, 12))
    y = np.zeros((4, 10), np.float32)
    pointers = [(ctypes.c_void_p * 1)(array.ctypes.data) for array in (x, y)]
    library.kiln_run_batch.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64]
    status = library.kiln_run_batch(weights.ctypes.data, workspace.ctypes.data, pointers[0], pointers[1], None, 2)
    assert status == 0
    np.testing.assert_allclose(y[:2], _session(model).run(None, {"x": x[:2]})[0], rtol=1e-4, atol=1e-6)


def dividing_by_size(axis: int, name: str) -> tuple[list, dict]:
    """Nodes (and their constants) dividing x by its size along `axis`, read from its Shape; the Div is `name`."""
    return ([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "axis"], ["n"]),
             helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["x", "nf"], ["y"], name=name)], {"axis": np.array(axis, np.int64)})


def _refused(nodes, initializers=None, shape=("N", 4, 6)):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("nodes, initializers, reason", [
    ([helper.make_node("Transpose", ["x"], ["y"], name="swap", perm=[1, 0, 2])], None, "moves the batch axis"),
    ([helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean")], {"axes": np.array([0], np.int64)},
     "reduces the batch axis"),
    ([helper.make_node("Softmax", ["x"], ["y"], name="soft", axis=0)], None, "works along the batch axis"),
    (*dividing_by_size(0, "by_batch"), "computes with the batch size"),
])
def test_what_mixes_batch_entries_is_refused_by_name(nodes, initializers, reason):
    model = _refused(nodes, initializers)
    name = nodes[-1].name
    with pytest.raises(DynamicBatchError, match=f"{name}.*{reason}|{reason}") as error:
        compiler.compile(model, target="cpu", shapes={"x": ["1..4", 4, 6]})
    assert name in str(error.value) and "specialize=" in str(error.value)


def test_a_reshape_target_from_the_batch_size_is_allowed():
    """Shape -> Concat -> Reshape is how exporters keep the batch: it only sets a shape."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
             helper.make_node("Concat", ["n", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    model = _refused(nodes, {"zero": np.array([0], np.int64), "one": np.array([1], np.int64),
                             "minus_one": np.array([-1], np.int64)})
    executable = runtime.load(compiler.compile(model, target="cpu", shapes={"x": ["1..4", 4, 6]}))
    x = RNG.standard_normal((3, 4, 6)).astype(np.float32)
    np.testing.assert_array_equal(executable.infer({"x": x})["y"], np.maximum(x.reshape(3, -1), 0))


def test_bad_bounds_are_explained():
    model = _refused([helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(DynamicBatchError, match="1 <= low <= high"):
        compiler.compile(model, target="cpu", shapes={"x": ["4..2", 4, 6]})


def test_other_targets_point_to_specialize():
    with pytest.raises(DynamicBatchError, match="cpu and gpu targets, not 'ref'.*specialize="):
        compiler.compile(_cnn(), target="ref", shapes={"x": ["1..4", 3, 12, 12]})


def test_cli_compiles_bounds(tmp_path, capsys):
    model_path = tmp_path / "cnn.onnx"
    model_path.write_bytes(_cnn().SerializeToString())
    out = tmp_path / "cnn.kiln"
    assert main(["compile", str(model_path), "-t", "cpu", "-o", str(out), "--shape", "x=1..3,3,12,12"]) == EXIT_OK
    assert runtime.load(out).manifest["dynamic_batch"]["max"] == 3
    assert main(["run", str(out)]) == EXIT_OK  # random inputs at the upper bound


def test_encoder_kernels_launch_only_the_items_of_the_batch(encoder):
    """Every kernel of the encoder walks the batch outermost (KernelSpec.batch_items), so kiln_run_batch
    computes each launch's item count from the batch size: none runs its items for the whole bound."""
    import re

    from compiler.codegen.llvm.aot import BATCH_ENTRY, build_module
    from compiler.codegen.llvm.kernels.registry import in_place_input
    from compiler.codegen.memory_plan import plan_memory
    from compiler.driver import optimize
    from compiler.dynamic_batch import batch_factors, split_bounds

    static, bounds = split_bounds({"input_ids": ["1..4", 16], "attention_mask": ["1..4", 16]})
    graph = optimize(encoder.model, "cpu", shapes=static)
    module = build_module(graph, plan_memory(graph, in_place_input, precompute=True),
                          (bounds.high, batch_factors(graph, bounds)))
    launches = re.findall(r"kiln_parallel_for\"?\(.*, i64 ([^)]+)\)", str(module.get_global(BATCH_ENTRY)))
    assert len(launches) > 20 and not [work for work in launches if work.strip().isdigit()]


def test_specialized_sequence_lengths_each_with_a_dynamic_batch(encoder, tmp_path):
    """specialize= parts with a dynamic batch: any batch size at each compiled sequence length."""
    parts = [{name: ["1..3", sequence] for name in ("input_ids", "attention_mask")} for sequence in (8, 16)]
    model = runtime.load(compiler.compile(encoder.model, target="cpu", specialize=parts).save(tmp_path / "e.kiln"))
    assert model.inputs[0].bounds == ((1, 3), (8, 16))
    session = _session(encoder.model)
    for batch, sequence in ((2, 8), (3, 16), (1, 16)):
        feeds = encoder.make_inputs(np.random.default_rng(batch), batch=batch, sequence=sequence)
        np.testing.assert_allclose(next(iter(model.infer(feeds).values())), session.run(None, feeds)[0],
                                   rtol=1e-3, atol=1e-4)
    with pytest.raises(InputError, match=r"input_ids=1\.\.3x8"):
        model.infer(encoder.make_inputs(RNG, batch=1, sequence=12))


def test_gemm_row_blocks_divide_one_entry_of_a_dynamic_batch():
    """At batch 1 of a bound of 8, row blocks of the bound's best size (96 rows for 1024 here) would compute
    rows of the next entry; with the entry's rows as the period they tile it exactly."""
    from dataclasses import replace

    from compiler.codegen.llvm.kernels.linear_algebra import gemm_plan, matmul_problem

    for rows, period in ((1024, 128), (768, 96), (200, 40)):
        problem = replace(matmul_problem("float32", (rows, 256), (256, 1024)), row_period=period)
        assert period % gemm_plan(problem).rows == 0


def test_an_unbounded_batch_runs_in_chunks(tmp_path):
    """"1.." compiles UNBOUNDED_CHUNK entries a call; larger batches run chunk by chunk, exactly."""
    from compiler.dynamic_batch import UNBOUNDED_CHUNK

    model = _cnn()
    executable = runtime.load(compiler.compile(model, target="cpu", shapes={"x": ["1..", 3, 12, 12]}))
    assert executable.inputs[0].bounds[0] == (1, None)
    assert executable.manifest["dynamic_batch"]["chunk"] == UNBOUNDED_CHUNK
    session = _session(model)
    for batch in (1, UNBOUNDED_CHUNK, 2 * UNBOUNDED_CHUNK + 3):
        x = RNG.standard_normal((batch, 3, 12, 12)).astype(np.float32)
        got = executable.infer({"x": x})["y"]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, session.run(None, {"x": x})[0], rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match=r"outside the sizes 1\.\. "):
        executable.infer({"x": np.zeros((0, 3, 12, 12), np.float32)})


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_int8_with_a_dynamic_batch_computes_what_the_static_bound_does(tmp_path, target):
    """precision int8 with a dynamic batch: calibrated at the bound (batch-1 samples regrouped into batches
    of 4), so its ranges are those of a static batch-4 compile given the same entries in batches of 4, and
    any batch equals that artifact's first entries exactly."""
    model = _cnn()
    samples = RNG.standard_normal((8, 1, 3, 12, 12)).astype(np.float32)
    np.savez(tmp_path / "single.npz", x=samples)
    np.savez(tmp_path / "grouped.npz", x=samples.reshape(2, 4, 3, 12, 12))
    dynamic = runtime.load(compiler.compile(model, target=target, shapes={"x": ["1..4", 3, 12, 12]}, precision="int8",
                                            calibration=str(tmp_path / "single.npz")))
    static = runtime.load(compiler.compile(model, target=target, shapes={"x": [4, 3, 12, 12]}, precision="int8",
                                           calibration=str(tmp_path / "grouped.npz")))
    assert any(k["op_type"] in ("kiln::QuantizedConv", "QLinearConv") for k in dynamic.manifest["kernels"])
    x = RNG.standard_normal((4, 3, 12, 12)).astype(np.float32)
    full = static.infer({"x": x})["y"]
    for batch in (4, 1, 3):
        np.testing.assert_array_equal(dynamic.infer({"x": x[:batch]})["y"], full[:batch])


def test_calibration_samples_regroup_into_batches_of_the_bound_only_for_a_dynamic_batch():
    from compiler.calibration_data import CalibrationError, _stack
    from compiler.ir.types import TensorType

    bound = TensorType("float32", (4, 3))
    single = np.arange(30, dtype=np.float32).reshape(10, 1, 3)  # ten batch-1 samples: two whole batches of 4
    grouped = _stack("x", single, bound, regroup=True)
    assert grouped.shape == (2, 4, 3) and np.array_equal(grouped.reshape(-1, 3), single.reshape(-1, 3)[:8])
    with pytest.raises(CalibrationError, match=r"has shape \[10, 1, 3\]; the model takes \[4, 3\]"):
        _stack("x", single, bound)
    with pytest.raises(CalibrationError, match="the model takes"):
        _stack("x", single[:3], bound, regroup=True)  # fewer entries than one batch
