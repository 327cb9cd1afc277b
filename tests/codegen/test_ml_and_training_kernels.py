"""cpu Momentum/Adagrad/Adam, TreeEnsemble, ArrayFeatureExtractor, Binarizer, TfIdfVectorizer and
training-mode BatchNormalization kernels against the ref target (and ONNX Runtime where it
implements the op and the ref target does not follow the specification), at 1 and 2 threads."""

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from compiler.codegen.llvm.kernels.registry import kernel_for
from compiler.driver import UnsupportedByTargetError
from frontends.onnx.importer import import_model
from tests.codegen.kernel_harness import TOLERANCE, assert_cpu_matches_ref, node_model, random, run_cpu

ML, TRAINING = "ai.onnx.ml", "ai.onnx.preview.training"
OPSETS = {ML: 5, TRAINING: 1}


def domain_model(op_type: str, domain: str, feeds: dict, constants: dict | None = None, attrs: dict | None = None,
                 outputs: tuple[str, ...] = ("y",), ml_opset: int = 5):
    """node_model for an op of another domain (its opset imported next to ONNX 21's)."""
    model = node_model(op_type, feeds, constants, attrs, outputs, opset=21)
    model.graph.node[0].domain = domain
    version = ml_opset if domain == ML else OPSETS[domain]
    model.opset_import.append(helper.make_opsetid(domain, version))
    return model


def onnxruntime_results(model, feeds: dict) -> list:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def check_reason(model, op_type: str) -> str | None:
    graph = import_model(model)
    node = next(n for n in graph.nodes() if n.op_type == op_type)
    return kernel_for(node).check(graph, node)


# ----- Momentum / Adagrad / Adam ---------------------------------------------------------------
SHAPES = [(3, 40), (7,), (2, 3, 50)]  # several tensors per node, sizes that split over two threads


def optimizer_feeds(operands: int, dtype, step: int, shapes=SHAPES) -> dict:
    feeds = {"r": np.array(0.1, dtype), "t": np.array(step, np.int64)}
    for operand in range(operands):
        for index, shape in enumerate(shapes):
            values = random(shape, dtype, seed=10 * operand + index)
            feeds[f"in{operand}_{index}"] = np.abs(values) if operand == 3 else values  # Adam's H is >= 0
    return feeds


def optimizer_model(op_type: str, feeds: dict, operands: int, attrs: dict, shapes=SHAPES):
    outputs = tuple(f"out{k}_{i}" for k in range(operands - 1) for i in range(len(shapes)))
    return domain_model(op_type, TRAINING, feeds, attrs=attrs, outputs=outputs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [0, 3])
@pytest.mark.parametrize("mode", ["standard", "nesterov"])
def test_momentum(mode, step, dtype):
    feeds = optimizer_feeds(3, dtype, step)
    attrs = {"alpha": 0.9, "beta": 0.7, "norm_coefficient": 0.01, "mode": mode}
    assert_cpu_matches_ref(optimizer_model("Momentum", feeds, 3, attrs), feeds)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [0, 5])
@pytest.mark.parametrize("attrs", [{}, {"decay_factor": 0.1, "epsilon": 1e-3, "norm_coefficient": 0.02}])
def test_adagrad(attrs, step, dtype):
    feeds = optimizer_feeds(3, dtype, step)
    feeds.update({name: np.abs(value) for name, value in feeds.items() if name.startswith("in2_")})  # H >= 0
    assert_cpu_matches_ref(optimizer_model("Adagrad", feeds, 3, attrs), feeds)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [0, 4])
@pytest.mark.parametrize("attrs", [{}, {"alpha": 0.8, "beta": 0.95, "epsilon": 1e-2, "norm_coefficient": 0.01,
                                        "norm_coefficient_post": 0.05}])
def test_adam(attrs, step, dtype):
    """onnx.reference rounds every Adam output to float32, so float64 results are held to its values."""
    feeds = optimizer_feeds(4, dtype, step)
    model = optimizer_model("Adam", feeds, 4, attrs)
    if dtype == np.float32:
        assert_cpu_matches_ref(model, feeds)
        return
    expected = runtime.load(compiler.compile(model, target="ref")).infer(feeds)
    for name, value in run_cpu(model, feeds).items():
        assert value.dtype == np.float64, name
        np.testing.assert_allclose(value, expected[name], **TOLERANCE, err_msg=name)


def test_optimizer_refusals():
    feeds = optimizer_feeds(3, np.float32, 1, shapes=[(4,)])
    heavy = {"alpha": 0.9, "beta": 0.7, "norm_coefficient": 0.0, "mode": "heavy"}
    reason = check_reason(optimizer_model("Momentum", feeds, 3, heavy, [(4,)]), "Momentum")
    assert "not 'standard' or 'nesterov'" in reason
    feeds["in2_0"] = np.zeros((5,), np.float32)
    assert "different shapes" in check_reason(optimizer_model("Adagrad", feeds, 3, {}, [(4,)]), "Adagrad")


# ----- TreeEnsemble ----------------------------------------------------------------------------
def random_forest(rng, trees: int, depth: int, features: int, targets: int, modes: list[int], missing: bool,
                  dtype=np.float32):
    """TreeEnsemble attributes of full binary trees, nodes numbered depth first (true branch
    first) so onnx.reference hands out membership sets in nodes_modes order too."""
    keys = ("modes", "features", "splits", "true", "true_leaf", "false", "false_leaf", "missing")
    columns = {key: [] for key in keys}
    leaf_targets, leaf_weights, members, roots = [], [], [], []

    def leaf() -> int:
        leaf_targets.append(int(rng.integers(0, targets)))
        leaf_weights.append(float(np.float32(rng.normal())))
        return len(leaf_weights) - 1

    def branch(level: int) -> int:
        index = len(columns["modes"])
        mode = int(rng.choice(modes))
        for key, value in (("modes", mode), ("features", int(rng.integers(0, features))),
                           ("splits", float(rng.integers(1, 5)) + (0.0 if mode in (4, 5) else 0.5)),
                           ("missing", int(missing and rng.integers(0, 2)))):
            columns[key].append(value)
        if mode == 6:
            members.extend([float(v) for v in rng.choice([1, 2, 3, 4, 5], size=2, replace=False)] + [np.nan])
        for side in ("true", "false"):
            columns[side].append(None)
            columns[f"{side}_leaf"].append(level == depth)
        for side in ("true", "false"):
            columns[side][index] = leaf() if level == depth else branch(level + 1)
        return index

    for _ in range(trees):
        roots.append(branch(1))
    attrs = {
        "n_targets": targets, "tree_roots": roots, "nodes_featureids": columns["features"],
        "nodes_modes": numpy_helper.from_array(np.array(columns["modes"], np.uint8), "modes"),
        "nodes_splits": numpy_helper.from_array(np.array(columns["splits"], dtype), "splits"),
        "nodes_truenodeids": columns["true"], "nodes_trueleafs": [int(v) for v in columns["true_leaf"]],
        "nodes_falsenodeids": columns["false"], "nodes_falseleafs": [int(v) for v in columns["false_leaf"]],
        "leaf_targetids": leaf_targets,
        "leaf_weights": numpy_helper.from_array(np.array(leaf_weights, dtype), "weights"),
    }
    if members:
        attrs["membership_values"] = numpy_helper.from_array(np.array(members, dtype), "members")
    if missing:
        attrs["nodes_missing_value_tracks_true"] = columns["missing"]
    return attrs


def forest_inputs(rng, rows: int, features: int, dtype, nans: bool) -> np.ndarray:
    """Small whole numbers (so set membership and equality hit) with some halves and NaNs."""
    x = rng.integers(0, 6, (rows, features)).astype(dtype) + rng.choice([0.0, 0.5], (rows, features)).astype(dtype)
    if nans:
        x[rng.random((rows, features)) < 0.1] = np.nan
    return x


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
@pytest.mark.parametrize("modes, missing", [([0], False), ([0, 1, 2, 3], True), ([4, 5, 6, 0], True), ([6], False)])
def test_tree_ensemble(modes, missing, aggregate):
    rng = np.random.default_rng(len(modes) + aggregate)
    attrs = random_forest(rng, trees=5, depth=3, features=4, targets=3, modes=modes, missing=missing)
    x = forest_inputs(rng, 64, 4, np.float32, nans=missing)
    model = domain_model("TreeEnsemble", ML, {"x": x}, attrs={**attrs, "aggregate_function": aggregate})
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


def test_tree_ensemble_float64_and_one_target():
    rng = np.random.default_rng(7)
    attrs = random_forest(rng, trees=3, depth=4, features=3, targets=1, modes=[0, 3, 6], missing=True, dtype=np.float64)
    x = forest_inputs(rng, 40, 3, np.float64, nans=True)
    model = domain_model("TreeEnsemble", ML, {"x": x}, attrs={**attrs, "aggregate_function": 0})
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


@pytest.mark.parametrize("post_transform", [1, 2, 3, 4])
def test_tree_ensemble_post_transforms_match_onnxruntime(post_transform):
    """The ONNX reference skips post transforms; ONNX Runtime applies them, with SOFTMAX (1) and
    LOGISTIC (2) swapped (it casts the opset-5 number to its older enum)."""
    rng = np.random.default_rng(post_transform)
    attrs = random_forest(rng, trees=6, depth=3, features=4, targets=4, modes=[0, 2, 4, 5], missing=True)
    attrs["leaf_weights"] = numpy_helper.from_array(rng.uniform(0.01, 0.2, 6 * 8).astype(np.float32), "weights")
    x = forest_inputs(rng, 32, 4, np.float32, nans=True)
    ours = domain_model("TreeEnsemble", ML, {"x": x}, attrs={**attrs, "post_transform": post_transform})
    theirs = domain_model("TreeEnsemble", ML, {"x": x}, attrs={**attrs, "post_transform": {1: 2, 2: 1}.get(
        post_transform, post_transform)})
    np.testing.assert_allclose(run_cpu(ours, {"x": x})["y"], onnxruntime_results(theirs, {"x": x})[0], **TOLERANCE)


def test_tree_ensemble_single_leaf_tree_is_the_leaf_its_branches_name():
    """A root whose branches both name leaf 2 is leaf 2 (the specification; ONNX Runtime agrees)."""
    attrs = {"n_targets": 1, "tree_roots": [0], "nodes_featureids": [0], "nodes_truenodeids": [2],
             "nodes_falsenodeids": [2], "nodes_trueleafs": [1], "nodes_falseleafs": [1], "leaf_targetids": [0, 0, 0],
             "nodes_modes": numpy_helper.from_array(np.array([0], np.uint8), "modes"),
             "nodes_splits": numpy_helper.from_array(np.array([1.0], np.float32), "splits"),
             "leaf_weights": numpy_helper.from_array(np.array([1, 2, 3], np.float32), "weights")}
    x = np.array([[0.0], [5.0]], np.float32)
    model = domain_model("TreeEnsemble", ML, {"x": x}, attrs=attrs)
    np.testing.assert_array_equal(run_cpu(model, {"x": x})["y"], [[3], [3]])
    np.testing.assert_array_equal(onnxruntime_results(model, {"x": x})[0], [[3], [3]])


def test_tree_ensemble_refusals():
    rng = np.random.default_rng(0)
    x = forest_inputs(rng, 4, 2, np.float32, nans=False)
    attrs = random_forest(rng, trees=1, depth=2, features=2, targets=1, modes=[0], missing=False)
    cyclic = {**attrs, "nodes_falsenodeids": [0] + attrs["nodes_falsenodeids"][1:], "nodes_falseleafs": [0, 1, 1]}
    assert "not trees" in check_reason(domain_model("TreeEnsemble", ML, {"x": x}, attrs=cyclic), "TreeEnsemble")
    wide = {**attrs, "nodes_featureids": [5, 0, 0]}
    assert "reads feature 5" in check_reason(domain_model("TreeEnsemble", ML, {"x": x}, attrs=wide), "TreeEnsemble")
    member = {**attrs, "nodes_modes": numpy_helper.from_array(np.array([6, 0, 0], np.uint8), "modes")}
    assert "BRANCH_MEMBER" in check_reason(domain_model("TreeEnsemble", ML, {"x": x}, attrs=member), "TreeEnsemble")


# ----- ArrayFeatureExtractor / Binarizer -------------------------------------------------------
@pytest.mark.parametrize("shape, indices, dtype", [
    ((3, 4), [2, 0, 3], np.float32), ((2, 7), [[6, 1]], np.float64), ((2, 3, 5), [[4], [0], [-1]], np.int64),
    ((4, 300), list(range(0, 300, 7)), np.int32)])
def test_array_feature_extractor(shape, indices, dtype):
    x, indices = random(shape, dtype), np.array(indices, np.int64)
    for constants in ({"indices": indices}, None):  # indices known at compile time, then read at run time
        feeds = {"x": x} if constants else {"x": x, "indices": indices}
        model = domain_model("ArrayFeatureExtractor", ML, feeds, constants, ml_opset=1)
        assert_cpu_matches_ref(model, feeds, exact=True)
    if min(indices.reshape(-1)) >= 0:
        feeds = {"x": x, "indices": indices}
        model = domain_model("ArrayFeatureExtractor", ML, feeds, ml_opset=1)
        np.testing.assert_array_equal(run_cpu(model, feeds)["y"], onnxruntime_results(model, feeds)[0])


def test_array_feature_extractor_clamps_out_of_range_indices():
    x, indices = np.arange(8, dtype=np.float32).reshape(2, 4), np.array([9, -20], np.int64)
    feeds = {"x": x, "indices": indices}
    y = run_cpu(domain_model("ArrayFeatureExtractor", ML, feeds, ml_opset=1), feeds)["y"]
    np.testing.assert_array_equal(y, [[3, 0], [7, 4]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("threshold", [0.0, 1.5, -2.0])
def test_binarizer(dtype, threshold):
    x = random((5, 70), dtype)
    if dtype in (np.float32, np.float64):
        x[0, :3] = [np.nan, threshold, np.float32(threshold) + 1e-3]
    model = domain_model("Binarizer", ML, {"x": x}, attrs={"threshold": threshold}, ml_opset=1)
    assert_cpu_matches_ref(model, {"x": x}, exact=True)


# ----- TfIdfVectorizer -------------------------------------------------------------------------
POOL = {"ngram_counts": [0, 4, 10], "ngram_indexes": list(range(13)),
        "pool_int64s": [2, 3, 5, 4, 5, 6, 7, 8, 6, 7, 5, 6, 7, 2, 2, 3, 8, 6, 7]}  # 4 unigrams, 3 bigrams, 3 trigrams


@pytest.mark.parametrize("mode, weights", [("TF", False), ("IDF", False), ("IDF", True), ("TFIDF", False),
                                           ("TFIDF", True)])
@pytest.mark.parametrize("lengths, skips", [((1, 1), 0), ((1, 3), 2), ((2, 3), 0), ((2, 2), 4), ((3, 3), 1)])
@pytest.mark.parametrize("shape, dtype", [((6, 14), np.int32), ((20,), np.int64)])
def test_tfidf_vectorizer(shape, dtype, lengths, skips, mode, weights):
    rng = np.random.default_rng(skips)
    x = rng.integers(2, 9, shape).astype(dtype)
    attrs = {**POOL, "mode": mode, "min_gram_length": lengths[0], "max_gram_length": lengths[1],
             "max_skip_count": skips}
    if weights:
        attrs["weights"] = [float(np.float32(w)) for w in rng.uniform(0.5, 2.0, 13)]
    model = node_model("TfIdfVectorizer", {"x": x}, attrs=attrs, opset=21)
    if mode != "TF" and not weights:  # onnx.reference fails without weights; ONNX Runtime uses 1s
        y = run_cpu(model, {"x": x})["y"]
    else:
        y = assert_cpu_matches_ref(model, {"x": x}, exact=True)["y"]
    np.testing.assert_allclose(y, onnxruntime_results(model, {"x": x})[0], **TOLERANCE)


def test_tfidf_vectorizer_shared_columns_and_refusals():
    x = np.array([[5, 6, 7, 5, 6], [7, 7, 7, 2, 3]], np.int64)
    attrs = {**POOL, "ngram_indexes": [0, 1, 2, 1, 3, 3, 4, 5, 0, 5], "mode": "TF", "min_gram_length": 1,
             "max_gram_length": 3, "max_skip_count": 1}
    assert_cpu_matches_ref(node_model("TfIdfVectorizer", {"x": x}, attrs=attrs, opset=21), {"x": x}, exact=True)
    short = node_model("TfIdfVectorizer", {"x": x}, attrs={**attrs, "ngram_indexes": [0, 1, 2]}, opset=21)
    assert "more pooled n-grams" in check_reason(short, "TfIdfVectorizer")


def test_tfidf_vectorizer_on_strings_is_refused_with_a_reason():
    attrs = {"mode": "TF", "min_gram_length": 1, "max_gram_length": 1, "max_skip_count": 0, "ngram_counts": [0],
             "ngram_indexes": [0, 1], "pool_strings": ["a", "b"]}
    graph_input = helper.make_tensor_value_info("x", TensorProto.STRING, [3])
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "tfidf", [graph_input], [helper.make_value_info("y", helper.TypeProto())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(UnsupportedByTargetError, match="string"):
        compiler.compile(model, target="cpu")


# ----- BatchNormalization (training mode) ------------------------------------------------------
@pytest.mark.parametrize("shape, dtype", [((2, 3, 4, 5), np.float32), ((6, 3), np.float32), ((5, 300), np.float32),
                                          ((2, 1, 7), np.float64), ((1, 4, 3, 2, 5), np.float64)])
@pytest.mark.parametrize("attrs", [{}, {"momentum": 0.7, "epsilon": 1e-2}])
def test_batch_normalization_training(shape, dtype, attrs):
    channels = shape[1]
    x = random(shape, dtype)
    constants = {"scale": random((channels,), dtype, 1), "bias": random((channels,), dtype, 2),
                 "mean": random((channels,), dtype, 3), "var": np.abs(random((channels,), dtype, 4))}
    model = node_model("BatchNormalization", {"x": x}, constants, attrs={**attrs, "training_mode": 1},
                       outputs=("y", "running_mean", "running_var"), opset=15)
    assert_cpu_matches_ref(model, {"x": x})
    np.testing.assert_allclose(run_cpu(model, {"x": x})["y"], onnxruntime_results(model, {"x": x})[0], **TOLERANCE)


def test_batch_normalization_statistics_outputs_before_opset_14_are_refused():
    x = random((2, 3, 4))
    constants = {name: np.ones(3, np.float32) for name in ("scale", "bias", "mean", "var")}
    outputs = ("y", "mean_out", "var_out", "saved_mean", "saved_var")
    model = node_model("BatchNormalization", {"x": x}, constants, outputs=outputs, opset=9)
    assert "training_mode" in check_reason(model, "BatchNormalization")

