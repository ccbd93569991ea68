"""ONNX YOLO engine: decode against a hand-computed example, letterbox mapping, real models (the shipped
one and tiny hand-built ONNX graphs with custom classes or broken metadata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models.onnx_yolo import (LetterboxParams, ModelError, OnnxYoloDetector, decode_predictions, letterbox_into,
                              nms_to_image)
from models.yolo_head import BoxBranch, dfl_boxes
from station.config import BUNDLED_MODEL
from station.domain import DETECTOR_CLASSES


def test_decode_hand_computed_example():
    # Three anchors, two classes. Network input 100x100, image 200x100 letterboxed: gain 0.5, pad_y 25.
    pred = np.zeros((4 + 2, 3), np.float32)
    pred[:, 0] = [50, 50, 20, 10, 0.9, 0.1]  # class 0 at 0.9
    pred[:, 1] = [51, 50, 20, 10, 0.8, 0.2]  # overlaps anchor 0, same class: suppressed by NMS
    pred[:, 2] = [51, 50, 20, 10, 0.1, 0.7]  # same place but class 1: kept (class-wise NMS)
    params = LetterboxParams(gain=0.5, pad_x=0, pad_y=25)
    xyxy, cls, score = decode_predictions(pred, conf=0.25, iou=0.45, params=params, image_shape=(100, 200))
    assert cls.tolist() == [0, 1]
    assert score.tolist() == pytest.approx([0.9, 0.7])
    # Anchor 0: cx 50, cy 50, w 20, h 10 -> (40, 45, 60, 55) in input; minus pad, divided by gain.
    assert xyxy[0].tolist() == pytest.approx([80, 40, 120, 60])
    assert xyxy[1].tolist() == pytest.approx([82, 40, 122, 60])


def test_decode_threshold_and_clip():
    pred = np.zeros((5, 2), np.float32)
    pred[:, 0] = [5, 5, 20, 20, 0.2]  # below threshold
    pred[:, 1] = [95, 95, 20, 20, 0.6]  # runs off the image: clipped
    xyxy, cls, score = decode_predictions(pred, 0.25, 0.45, LetterboxParams(1.0, 0, 0), (100, 100))
    assert len(score) == 1 and xyxy[0].tolist() == pytest.approx([85, 85, 100, 100])


def test_dfl_boxes_hand_computed_example():
    """A level of 2x2 cells at stride 16 (input 32x32), reg_max 4: the DFL expectation of each side."""
    reg_max, big = 4, 30.0
    logits = np.zeros((4 * reg_max, 1), np.float32)
    # Cell (row 1, col 0) = flat 2. Distances l, t, r put all their weight on bins 1, 0, 3; b half-half on bins
    # 2 and 3 (expectation 2.5), in cells.
    for side, b in ((0, 1), (1, 0), (2, 3)):
        logits[side * reg_max + b] = big
    logits[3 * reg_max + 2] = logits[3 * reg_max + 3] = big
    xyxy = dfl_boxes(logits, np.array([2]), (2, 2), (32, 32), reg_max)
    # Anchor centre (0.5, 1.5) cells: x1 = (0.5 - 1) * 16, y1 = 1.5 * 16, x2 = 3.5 * 16, y2 = 4 * 16.
    assert xyxy[0].tolist() == pytest.approx([-8, 24, 56, 64], abs=1e-3)
    out = nms_to_image(xyxy, np.array([1]), np.array([0.9], np.float32), 0.25, 0.45, LetterboxParams(1.0, 0, 0),
                       (32, 32))
    assert out[0][0].tolist() == pytest.approx([0, 24, 32, 32], abs=1e-3)  # clipped to the image


def _conv_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain zero-padded 'same' convolution (C, h, w) -> (O, h, w), written out for the test."""
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    out = np.zeros((w.shape[0], *x.shape[1:]))
    for dy in range(k):
        for dx in range(k):
            out += np.einsum("oc,chw->ohw", w[:, :, dy, dx], xp[:, dy:dy + x.shape[1], dx:dx + x.shape[2]])
    return out + b[:, None, None]


def test_box_branch_at_candidates_equals_the_convolutions_over_the_whole_map():
    """Per-candidate patches give what the two 3x3 convs and the 1x1 give over the whole map, corners and edges
    included (where the second conv's zero padding matters)."""
    rng = np.random.default_rng(0)
    c, c1, c2, out, h, w = 6, 5, 4, 8, 5, 7
    w1, w2, w3 = (rng.normal(size=s).astype(np.float32) for s in ((c1, c, 3, 3), (c2, c1, 3, 3), (out, c2, 1, 1)))
    b1, b2, b3 = (rng.normal(size=n).astype(np.float32) for n in (c1, c2, out))
    branch = BoxBranch(np.ascontiguousarray(w1.reshape(c1, -1).T), b1,
                       np.ascontiguousarray(w2.transpose(2, 3, 1, 0).reshape(-1, c2)), b2,
                       np.ascontiguousarray(w3.reshape(out, -1).T), b3)
    feature = rng.normal(size=(c, h, w)).astype(np.float32)
    silu = lambda x: x / (1 + np.exp(-x))  # noqa: E731
    full = _conv_same(silu(_conv_same(silu(_conv_same(feature, w1, b1)), w2, b2)), w3, b3).reshape(out, -1)
    idx = np.array([0, w - 1, w + 3, 2 * w + 2, h * w - 1, (h - 1) * w])  # corners, an edge, the middle
    np.testing.assert_allclose(branch.logits_at(feature, idx), full[:, idx], rtol=1e-4, atol=1e-4)


def test_letterbox_matches_ultralytics_centering():
    img = np.full((100, 200, 3), 255, np.uint8)
    out = np.zeros((64, 64, 3), np.uint8)
    p = letterbox_into(img, out, (64, 64))
    assert p.gain == pytest.approx(0.32) and p.pad_x == 0 and p.pad_y == 16
    assert (out[:16] == 114).all() and (out[16:48] == 255).all() and (out[48:] == 114).all()


def _tiny_model(path: Path, names: str | None, n_classes: int, out_channels: int | None = None,
                input_shape=("batch", 3, 32, 32)) -> Path:
    """A real ONNX graph: a fixed 1x1 conv + reshape giving (B, 4 + nc, N) like a YOLO head."""
    c = out_channels or 4 + n_classes
    w = np.zeros((c, 3, 1, 1), np.float32)
    w[0, 0] = 32.0  # cx: strong response where red is high
    w[1, 1] = 32.0
    w[2:4] = 0.0
    b = np.zeros(c, np.float32)
    b[2:4] = 8.0  # w, h = 8 px everywhere
    if c > 4:
        w[4, 2] = 1.0  # class 0 score follows the blue channel
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "W", "B"], ["conv"]),
         helper.make_node("Reshape", ["conv", "shape"], ["output0"])],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [input_shape[0], c, 32 * 32])],
        [helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel()),
         helper.make_tensor("B", TensorProto.FLOAT, b.shape, b.ravel()),
         helper.make_tensor("shape", TensorProto.INT64, [3], [0, c, -1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if names is not None:
        model.metadata_props.add(key="names", value=names)
        model.metadata_props.add(key="imgsz", value="[32, 32]")
    onnx.save(model, path)
    return path


def test_custom_model_with_other_classes(tmp_path):
    path = _tiny_model(tmp_path / "custom.onnx", "{0: 'dust', 1: 'label_missing'}", 2)
    det = OnnxYoloDetector(path, confidence=0.5).load()
    assert det.class_names == ("dust", "label_missing")
    assert det._head is None  # no ultralytics Detect head in it: runs whole, decoded from (4 + nc, N)
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :, 0] = 255  # blue (BGR) everywhere -> class 0 score 1.0 at every cell
    (out,) = det.detect([img])
    assert len(out) >= 1 and set(out.names()) == {"dust"}


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        OnnxYoloDetector(tmp_path / "nope.onnx").load()


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxYoloDetector(path).load()


def test_model_without_names_metadata(tmp_path):
    path = _tiny_model(tmp_path / "nonames.onnx", None, 2)
    with pytest.raises(ModelError, match="no 'names'"):
        OnnxYoloDetector(path).load()


def test_model_output_not_matching_classes(tmp_path):
    path = _tiny_model(tmp_path / "mismatch.onnx", "{0: 'a', 1: 'b', 2: 'c'}", 3, out_channels=6)
    with pytest.raises(ModelError, match=r"expected \(B, 7, N\)"):
        OnnxYoloDetector(path).load()


def test_model_card_classes_must_match(tmp_path):
    path = _tiny_model(tmp_path / "m.onnx", "{0: 'a', 1: 'b'}", 2)
    path.with_suffix(".yaml").write_text("classes: [a, c]\nthresholds: {confidence: 0.3, iou: 0.5}\n")
    with pytest.raises(ModelError, match="model card classes"):
        OnnxYoloDetector(path).load()


def test_bundled_model_loads_with_domain_classes():
    det = OnnxYoloDetector(BUNDLED_MODEL).load()
    assert det.class_names == DETECTOR_CLASSES
    assert BUNDLED_MODEL.with_suffix(".yaml").exists(), "every ONNX file ships with its model card"


def test_batched_views_equal_single_calls():
    det = OnnxYoloDetector(BUNDLED_MODEL).load()
    rng = np.random.default_rng(0)
    from vision.synth import SceneStyle, random_look, render_item

    images = [render_item(rng, random_look(rng), ("crack", "stain"), SceneStyle(size=(480, 360))).image
              for _ in range(3)]
    batched = det.detect(images)
    single = [det.detect([im])[0] for im in images]
    for a, b in zip(batched, single):
        assert a.class_id.tolist() == b.class_id.tolist()
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)


def test_input_size_override_needs_dynamic_axes(tmp_path):
    fixed = _tiny_model(tmp_path / "fixed.onnx", "{0: 'a', 1: 'b'}", 2)
    with pytest.raises(ModelError, match="dynamic axes"):
        OnnxYoloDetector(fixed, input_size=64).load()
    dynamic = _tiny_model(tmp_path / "dyn.onnx", "{0: 'a', 1: 'b'}", 2, input_shape=("batch", 3, "h", "w"))
    det = OnnxYoloDetector(dynamic, input_size=64).load()
    assert det.input_size == (64, 64)
    img = np.zeros((120, 160, 3), np.uint8)
    (out,) = det.detect([img])  # 160x120 letterboxed at 64 -> a 64x48 rectangular input runs through
    assert out.xyxy.shape[1] == 4
