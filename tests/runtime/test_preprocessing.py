"""Input preprocessing compiled into the model (preprocess=, --input-type/--layout/...): the artifact
takes uint8 NHWC BGR images of another size and matches the same steps done in numpy before the
plain model; the steps become kernels (fused), not numpy at run time; bad requests are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
import runtime
from compiler.cli import EXIT_OK, main
from compiler.preprocess import Preprocess, PreprocessError

MEAN, SCALE = (123.7, 116.3, 103.5), (58.4, 57.1, 57.4)


def small_cnn():
    """image [1, 3, 16, 16] float32 -> 3x3 Conv (4 channels) -> Relu."""
    weights = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["y"], name="relu")], "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        initializer=[numpy_helper.from_array(weights, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def bilinear_half_pixel(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """ONNX Resize linear / half_pixel, in numpy, on N C H W."""
    def taps(size_in, size_out):
        x = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(x).astype(int)
        return low, np.minimum(low + 1, size_in - 1), x - low
    y0, y1, fy = taps(image.shape[2], height)
    x0, x1, fx = taps(image.shape[3], width)
    rows = image[:, :, y0] * (1 - fy)[:, None] + image[:, :, y1] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


def numpy_steps(frame: np.ndarray) -> np.ndarray:
    x = frame.astype(np.float32).transpose(0, 3, 1, 2)[:, ::-1]
    x = bilinear_half_pixel(x, 16, 16)
    return ((x - np.array(MEAN).reshape(1, 3, 1, 1)) / np.array(SCALE).reshape(1, 3, 1, 1)).astype(np.float32)


STEPS = Preprocess(element_type="uint8", layout="NHWC", reverse_channels=True, resize_from=(24, 20), mean=MEAN,
                   scale=SCALE)


@pytest.mark.parametrize("target", ["ref", "cpu"])
def test_compiled_preprocessing_matches_numpy_steps(target):
    artifact = compiler.compile(small_cnn(), target=target, preprocess={"image": STEPS})
    model = runtime.load(artifact)
    assert (model.inputs[0].dtype, model.inputs[0].shape) == ("uint8", (1, 24, 20, 3))
    frame = np.random.default_rng(0).integers(0, 256, (1, 24, 20, 3), dtype=np.uint8)
    plain = runtime.load(compiler.compile(small_cnn(), target="ref"))
    expected = plain.infer({"image": numpy_steps(frame)})["y"]
    np.testing.assert_allclose(model.infer({"image": frame})["y"], expected, rtol=1e-4, atol=1e-4)
    if target == "cpu":  # the steps run as compiled kernels; mean and scale fused into one loop
        ops = [kernel["op_type"] for kernel in artifact.manifest["kernels"]]
        assert {"Cast", "Transpose", "Gather", "Resize", "kiln::FusedElementwise"} <= set(ops)
        assert "Sub" not in ops and "Div" not in ops


@pytest.mark.parametrize("steps, message", [
    ({"pixels": Preprocess(layout="NHWC")}, "the model's inputs are"),
    ({"image": Preprocess(mean=(1.0, 2.0))}, "mean has 2 values; the model's input has 3 channels"),
    ({"image": Preprocess(element_type="int4")}, "element type 'int4'"),
    ({"image": Preprocess(layout="NCWH")}, "layout 'NCWH'"),
])
def test_bad_requests(steps, message):
    with pytest.raises(PreprocessError, match=message):
        compiler.compile(small_cnn(), target="ref", preprocess=steps)


def test_cli_flags(tmp_path):
    path = tmp_path / "cnn.onnx"
    path.write_bytes(small_cnn().SerializeToString())
    output = tmp_path / "cnn.kiln"
    assert main(["compile", str(path), "-t", "cpu", "-o", str(output), "--quiet", "--input-type", "image=u8",
                 "--layout", "image=nhwc", "--reverse-input-channels", "image", "--resize", "image=24,20",
                 "--mean-values", "image=" + ",".join(map(str, MEAN)),
                 "--scale-values", "image=" + ",".join(map(str, SCALE))]) == EXIT_OK
    frame = np.random.default_rng(1).integers(0, 256, (1, 24, 20, 3), dtype=np.uint8)
    expected = runtime.load(compiler.compile(small_cnn(), target="ref")).infer({"image": numpy_steps(frame)})["y"]
    np.testing.assert_allclose(runtime.load(output).infer({"image": frame})["y"], expected, rtol=1e-4, atol=1e-4)
