"""One cpu artifact for a bounded dynamic dim past the batch, a sequence length say (shapes={"ids": ["1..4",
"1..64"]}, --shape ids=1..4,1..64): every (batch, length) in the bounds matches ONNX Runtime, softmaxes,
reductions and contractions over the dim read its padding masked, and what would mix the padding in
otherwise is refused by name."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from bench.models import bert_encoder
from compiler.cli import EXIT_OK, main
from compiler.codegen.llvm.extent_launch import row_runs
from compiler.codegen.llvm.kernels.registry import kernel_for
from compiler.driver import optimize
from compiler.codegen.llvm.extent_marks import mark_extent_kernels
from compiler.dynamic_extent import DynamicExtentError, ExtentBounds, extent_axes, split_extent
from compiler.ir.graph import Value
from runtime import InputError
from tests.runtime.test_dynamic_batch import dividing_by_size

RNG = np.random.default_rng(0)
PAIRS = [(1, 64), (2, 17), (4, 1), (3, 64), (1, 5), (4, 33)]


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def encoder():
    return bert_encoder(layers=2, dynamic=True)


@pytest.fixture(scope="module")
def encoder_model(encoder, tmp_path_factory):
    artifact = compiler.compile(encoder.model, target="cpu",
                                shapes={"input_ids": ["1..4", "1..64"], "attention_mask": ["1..4", "1..64"]})
    return runtime.load(artifact.save(tmp_path_factory.mktemp("extent") / "encoder.kiln"), num_threads=2)


def test_encoder_matches_onnxruntime_at_every_batch_and_length(encoder, encoder_model):
    session = _session(encoder.model)
    for batch, length in PAIRS:
        feeds = encoder.make_inputs(np.random.default_rng(batch * 100 + length), batch=batch, sequence=length)
        feeds["attention_mask"][:] = 1.0 if length % 2 else feeds["attention_mask"]  # unmasked: only MaskTail hides
        got = next(iter(encoder_model.infer(feeds).values()))
        assert got.shape == (batch, length, 256)
        np.testing.assert_allclose(got, session.run(None, feeds)[0], rtol=1e-3, atol=1e-4)


def test_a_long_bound_cut_short_matches_onnxruntime():
    """At a bound of 512 the key transpose walks tiles (strided_copy.TILE), which stop at the tile holding
    the length; row blocks of 64 hold fewer rows below it."""
    encoder = bert_encoder(layers=1, dynamic=True)
    model = runtime.load(compiler.compile(encoder.model, target="cpu", shapes={
        "input_ids": [2, "1..512"], "attention_mask": [2, "1..512"]}), num_threads=2)
    session = _session(encoder.model)
    for length in (300, 7, 512):
        feeds = encoder.make_inputs(np.random.default_rng(length), batch=2, sequence=length)
        np.testing.assert_allclose(next(iter(model.infer(feeds).values())), session.run(None, feeds)[0],
                                   rtol=1e-3, atol=1e-4)


def test_signature_shows_both_dims_and_their_bounds(encoder_model):
    ids = next(info for info in encoder_model.inputs if info.name == "input_ids")
    assert ids.shape == ("batch", "sequence") and ids.bounds == ((1, 4), (1, 64))
    assert encoder_model.outputs[0].shape == ("batch", "sequence", 256)
    assert encoder_model.outputs[0].bounds == ((1, 4), (1, 64), None)


def test_lengths_outside_the_bounds_are_refused(encoder, encoder_model):
    with pytest.raises(InputError, match=r"axis 1 \(sequence\) is 65, outside the sizes 1\.\.64"):
        encoder_model.infer(encoder.make_inputs(RNG, batch=1, sequence=65))
    feeds = encoder.make_inputs(RNG, batch=2, sequence=16)
    feeds["attention_mask"] = feeds["attention_mask"][:, :8]
    with pytest.raises(InputError, match="inputs sharing a dim name must agree"):
        encoder_model.infer(feeds)


def test_masks_go_before_the_softmax_and_the_products(encoder):
    """Scores read -inf past s before the Softmax; the probabilities (0 there) times the values (read as 0
    past s) need no mask of their own; the keys read 0 past s, so the query-key product computes its
    padding columns from zeros rather than stale (perhaps denormal) memory."""
    static, bounds = split_extent({"input_ids": [1, "1..32"], "attention_mask": [1, "1..32"]})
    graph = optimize(encoder.model, "cpu", shapes=static, dynamic_extent=bounds.option())
    masks = [node for node in graph.nodes() if node.op_type == "MaskTail"]
    readers = sorted((graph.node(graph.uses(Value(node.name))[0][0]).op_type, graph.uses(Value(node.name))[0][1],
                      node.attrs["axis"], node.attrs["fill"]) for node in masks)
    assert readers == sorted([("FusedMatMul", 1, 3, 0.0), ("MatMul", 1, 2, 0.0), ("Softmax", 0, 3, -np.inf)] * 2)


def test_row_kernels_launch_only_the_positions_below_the_length(encoder):
    """The linear layers, normalizations and the softmax walk positions in rows: their launches are cut to
    the length (codegen/llvm/extent_launch.py); the value mask must fill every position, so it is not."""
    static, bounds = split_extent({"input_ids": [1, "1..128"], "attention_mask": [1, "1..128"]})
    options = {"dynamic_extent": bounds.option()}
    graph = optimize(encoder.model, "cpu", shapes=static, **options)
    bounds = ExtentBounds.from_options(options)
    axes = extent_axes(graph, bounds)
    mark_extent_kernels(graph, axes, 128)
    cut = {node.qualified_op: row_runs(graph, node, axes.get(Value(node.name), frozenset()), 128,
                                       kernel_for(node).work_items(graph, node), None)
           for node in graph.nodes() if not (node.is_input or node.is_constant)}
    for op in ("kiln::FusedMatMul", "LayerNormalization", "Softmax", "MatMul"):
        assert cut[op] is not None, op
    values_mask = next(node for node in graph.nodes() if node.op_type == "MaskTail" and node.attrs["axis"] == 2)
    assert row_runs(graph, values_mask, axes[Value(values_mask.name)], 128,
                    kernel_for(values_mask).work_items(graph, values_mask), None) is None


def _model(nodes, initializers=None, shape=("N", "S", 4), out_shape=None):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("node, initializers, reference", [
    (helper.make_node("Softmax", ["x"], ["y"], axis=1), None,
     lambda x: np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)),
    (helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0), {"axes": np.array([1], np.int64)},
     lambda x: x.sum(1)),
    (helper.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=1), {"axes": np.array([1], np.int64)},
     lambda x: x.max(1, keepdims=True)),
    (helper.make_node("ArgMin", ["x"], ["y"], axis=1, keepdims=0), None, lambda x: x.argmin(1)),
    (helper.make_node("Gather", ["x", "first"], ["y"], axis=1), {"first": np.array(0, np.int64)}, lambda x: x[:, 0]),
    (helper.make_node("CumSum", ["x", "axis"], ["y"]), {"axis": np.array(1, np.int64)}, lambda x: np.cumsum(x, 1)),
])
def test_ops_over_the_dim_see_only_the_given_positions(node, initializers, reference):
    """Padding past s is NaN-free zeros at the inputs but any value in between; masks make it vanish."""
    model = _model([helper.make_node("Exp", ["x"], ["e"]), helper.make_node(node.op_type, ["e", *node.input[1:]],
                                                                            node.output, **_attrs(node))],
                   initializers)
    executable = runtime.load(compiler.compile(model, target="cpu", shapes={"x": ["1..3", "2..9", 4]}))
    for batch, length in ((3, 9), (1, 2), (2, 5)):
        x = RNG.standard_normal((batch, length, 4)).astype(np.float32)
        np.testing.assert_allclose(executable.infer({"x": x})["y"], reference(np.exp(x)), rtol=1e-5, atol=1e-6)


def _attrs(node):
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


@pytest.mark.parametrize("nodes, initializers, reason", [
    ([helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean")], {"axes": np.array([1], np.int64)},
     "would count the padding"),
    ([helper.make_node("Concat", ["x", "x"], ["y"], name="join", axis=1)], None, "joins along the dynamic dim"),
    ([helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="cut")],
     {"starts": np.array([1], np.int64), "ends": np.array([3], np.int64), "axes": np.array([1], np.int64)},
     "Slice changes the dynamic dim"),
    ([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
      helper.make_node("AveragePool", ["t"], ["y"], name="average", kernel_shape=[3])], None,
     "would count or move the padding"),
    ([helper.make_node("MatMul", ["x", "w"], ["y"], name="fixed")], {"w": np.ones((4, 5), np.float32)}, None),
    (*dividing_by_size(1, "by_length"), "computes with the dynamic dim's size"),
])
def test_what_mixes_the_padding_in_is_refused_by_name(nodes, initializers, reason):
    model = _model(nodes, initializers)
    if reason is None:  # contracting the features, not the dim: compiles
        compiler.compile(model, target="cpu", shapes={"x": [2, "1..8", 4]})
        return
    with pytest.raises(DynamicExtentError, match=reason) as error:
        compiler.compile(model, target="cpu", shapes={"x": [2, "1..8", 4]})
    assert nodes[-1].name in str(error.value) and "specialize=" in str(error.value)


@pytest.mark.parametrize("shapes, message", [
    ({"x": [2, "1..", 4]}, "without an upper bound"),
    ({"x": [2, "3..2", 4]}, "1 <= low <= high"),
])
def test_bad_bounds_are_explained(shapes, message):
    with pytest.raises(DynamicExtentError, match=message):
        compiler.compile(_model([helper.make_node("Relu", ["x"], ["y"])]), target="cpu", shapes=shapes)


def test_inputs_sharing_a_dim_share_its_bounds(encoder):
    with pytest.raises(DynamicExtentError, match="share dynamic dim 'sequence' but give it bounds 1..32 and 1..16"):
        compiler.compile(encoder.model, target="cpu", shapes={"input_ids": [1, "1..32"],
                                                             "attention_mask": [1, "1..16"]})


def test_other_targets_and_int8_point_to_specialize():
    model = _model([helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(DynamicExtentError, match="cpu and gpu targets, not 'ref'.*specialize="):
        compiler.compile(model, target="ref", shapes={"x": [2, "1..8", 4]})
    with pytest.raises(DynamicExtentError, match="int8.*specialize="):
        compiler.compile(model, target="cpu", shapes={"x": [2, "1..8", 4]}, precision="int8")


def test_an_output_holding_the_dim_merged_is_refused():
    model = _model([helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=1)])
    with pytest.raises(DynamicExtentError, match="output 'y'.*whole on one axis"):
        compiler.compile(model, target="cpu", shapes={"x": [2, "1..8", 4]})


def test_disabling_the_masks_is_refused(encoder):
    with pytest.raises(DynamicExtentError, match="do not disable that pass"):
        compiler.compile(encoder.model, target="cpu", disable=["mask-dynamic-tails"],
                         shapes={"input_ids": [1, "1..16"], "attention_mask": [1, "1..16"]})


def test_cli_compiles_a_dynamic_length(encoder, tmp_path):
    model_path = tmp_path / "encoder.onnx"
    model_path.write_bytes(encoder.model.SerializeToString())
    out = tmp_path / "encoder.kiln"
    assert main(["compile", str(model_path), "-t", "cpu", "-o", str(out), "--shape", "input_ids=1,1..24",
                 "attention_mask=1,1..24"]) == EXIT_OK
    assert runtime.load(out).manifest["dynamic_extent"]["dims"] == [{"name": "sequence", "min": 1, "max": 24}]
    assert main(["run", str(out)]) == EXIT_OK  # random inputs at the upper bound


def test_the_c_header_declares_the_extent_entry():
    artifact = compiler.compile(_model([helper.make_node("Relu", ["x"], ["y"])]), target="cpu",
                                shapes={"x": ["1..4", "1..8", 4]})
    header = bytes(artifact.files["model.h"]).decode()
    assert "int kiln_run_extent(" in header and "KILN_EXTENT_MAX[] = {8};" in header
    assert "#define KILN_BATCH_MAX 4" in header and "kiln_run_batch" not in header


def test_specialised_shapes_with_a_generic_fallback(tmp_path):
    """specialize= may list a dynamic part: calls whose shapes a static part was compiled for run it, the
    others the dynamic one, and all match ONNX Runtime."""
    encoder = bert_encoder(layers=1, dynamic=True)
    names = ("input_ids", "attention_mask")
    artifact = compiler.compile(encoder.model, target="cpu", specialize=[
        {name: [1, 16] for name in names}, {name: ["1..2", "1..32"] for name in names}])
    model = runtime.load(artifact.save(tmp_path / "encoder.kiln"))
    session = _session(encoder.model)
    for (batch, length), part in (((1, 16), 0), ((2, 20), 1), ((1, 31), 1)):
        feeds = encoder.make_inputs(np.random.default_rng(length), batch=batch, sequence=length)
        assert model._executor._part_for([feeds[name] for name in names]) == part
        np.testing.assert_allclose(next(iter(model.infer(feeds).values())), session.run(None, feeds)[0],
                                   rtol=1e-3, atol=1e-4)


def test_a_sum_over_the_dim_merged_with_the_batch():
    """[B, S, 4] reshaped to [B*S, 4] holds the dim once per entry along axis 0: the mask before the sum
    fills each entry's positions past the length, not only the last entry's."""
    model = _model([helper.make_node("Reshape", ["x", "rows"], ["r"]),
                    helper.make_node("ReduceSum", ["r", "axes"], ["y"], keepdims=0)],
                   {"rows": np.array([-1, 4], np.int64), "axes": np.array([0], np.int64)})
    executable = runtime.load(compiler.compile(model, target="cpu", shapes={"x": [3, "1..8", 4]}))
    for length in (8, 5, 1):
        x = RNG.standard_normal((3, length, 4)).astype(np.float32)
        np.testing.assert_allclose(executable.infer({"x": x})["y"], x.sum((0, 1)), rtol=1e-5, atol=1e-5)
