"""String tensors on the cpu target: string nodes run in host parts (runtime/host.py) between native
parts of a hetero artifact; string inputs and outputs pass through the runtime as numpy arrays."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

import compiler
import runtime


def greet_and_match():
    """text [2] -> StringNormalizer(lower) -> StringConcat("!") (out) and RegexFullMatch -> Cast -> Add (native)."""
    nodes = [helper.make_node("StringNormalizer", ["text"], ["lower"], case_change_action="LOWER", name="normalize"),
             helper.make_node("StringConcat", ["lower", "bang"], ["greeting"], name="concat"),
             helper.make_node("RegexFullMatch", ["text"], ["matched"], pattern="[A-Z].*", name="capital"),
             helper.make_node("Cast", ["matched"], ["score"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Add", ["score", "score"], ["doubled"], name="double")]
    graph = helper.make_graph(nodes, "text", [helper.make_tensor_value_info("text", TensorProto.STRING, [2])],
                              [helper.make_tensor_value_info("greeting", TensorProto.STRING, None),
                               helper.make_tensor_value_info("doubled", TensorProto.FLOAT, [2])],
                              initializer=[helper.make_tensor("bang", TensorProto.STRING, [], [b"!"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_string_nodes_run_in_host_parts_between_native_ones(tmp_path):
    artifact = compiler.compile(greet_and_match(), target="cpu")
    assert [part["target"] for part in artifact.manifest["parts"]] == ["host", "cpu"]
    model = runtime.load(artifact.save(tmp_path / "text.kiln"))
    text = np.array(["Hello World", "one TWO"], dtype=object)
    outputs = model.infer({"text": text})
    assert outputs["greeting"].tolist() == ["hello world!", "one two!"]
    np.testing.assert_array_equal(outputs["doubled"], np.float32([2, 0]))
    expected = runtime.load(compiler.compile(greet_and_match(), target="ref")).infer({"text": text})
    assert expected["greeting"].tolist() == outputs["greeting"].tolist()


def test_cast_to_and_from_strings():
    nodes = [helper.make_node("Cast", ["number"], ["text"], to=TensorProto.STRING, name="to_text"),
             helper.make_node("Cast", ["text"], ["back"], to=TensorProto.INT64, name="to_int")]
    graph = helper.make_graph(nodes, "casts", [helper.make_tensor_value_info("number", TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("text", TensorProto.STRING, [3]),
                               helper.make_tensor_value_info("back", TensorProto.INT64, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    outputs = runtime.load(compiler.compile(model, target="cpu")).infer({"number": np.array([7, -2, 40], np.int64)})
    assert outputs["text"].tolist() == ["7", "-2", "40"] and outputs["back"].tolist() == [7, -2, 40]
