"""The OpenVINO engine (models/openvino_yolo.py): boxes as the ONNX engine's on real photos and renders, the
backbone's features as ONNX Runtime's, the config's engine choice and its fallback log line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.onnx_yolo import ModelError, OnnxYoloDetector
from models.openvino_yolo import OpenVinoYoloDetector, make_engine_detector, openvino_available
from models.training.bench import agreement, bench_images
from station.config import AutoDetectorConfig, ConfigError, OnnxDetectorConfig, OpenVinoDetectorConfig, load_config

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "weights" / "defects.onnx"
REAL = sorted((REPO / "tests" / "data" / "real" / "label_recognition").glob("*.jpeg"))
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="OpenVINO not installed (pip install openvino)")


@pytest.fixture(scope="module")
def photos_and_renders(tmp_path_factory) -> list[np.ndarray]:
    """The committed real photos (various sizes) and renders at camera sizes (1920x1080, 640x480)."""
    real = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in REAL]
    assert len(real) >= 6 and all(im is not None for im in real)
    renders = [im for _, im in bench_images(tmp_path_factory.mktemp("renders"), 6, seed=5)]
    return real + renders


def _boxes(detector, images) -> list:
    # One image per call and all views of an item in one call: both paths of the engine.
    single = [(d.xyxy, d.class_id) for im in images for d in detector.detect([im])]
    same_size = [im for im in images if im.shape == images[-1].shape]
    batched = [(d.xyxy, d.class_id) for d in detector.detect(same_size)]
    return single + batched


@needs_openvino
def test_openvino_f32_boxes_agree_with_the_onnx_engine(photos_and_renders):
    onnx = OnnxYoloDetector(MODEL).load()
    ov = OpenVinoYoloDetector(MODEL, precision="f32").load()
    assert ov.engine == "openvino" and ov.class_names == onnx.class_names and ov.input_size == onnx.input_size
    for det in (onnx, ov):
        det.confidence = 0.02  # many boxes, near-threshold ones included: a harder comparison than the card's
    ours, theirs = _boxes(ov, photos_and_renders), _boxes(onnx, photos_and_renders)
    matched, total = agreement(ours, theirs, iou_min=0.99)
    assert total >= 20, "too few boxes to compare: the test would prove nothing"
    assert matched == total
    assert sum(len(c) for _, c in ours) == total  # and no box of its own


@needs_openvino
def test_openvino_whole_graph_and_many_candidates_agree(photos_and_renders):
    """Without the head cut (the whole graph on OpenVINO) and with a floor so low that the box branch runs as
    its own graph (models.yolo_head.LAZY_CANDIDATES_PER_IMAGE)."""
    images = photos_and_renders[:4]
    onnx = OnnxYoloDetector(MODEL).load()
    whole = OpenVinoYoloDetector(MODEL, precision="f32", cut_head=False).load()
    cut = OpenVinoYoloDetector(MODEL, precision="f32").load()
    for det in (onnx, whole, cut):
        det.confidence = 0.005
    theirs = _boxes(onnx, images)
    for det in (whole, cut):
        matched, total = agreement(_boxes(det, images), theirs, iou_min=0.99)
        assert total > 50 and matched >= 0.99 * total


@needs_openvino
def test_openvino_default_precision_finds_the_same_defects(photos_and_renders):
    """The CPU's native precision (bf16 where it has AMX) moves boxes a little: the same class within IoU 0.9,
    for nearly every box the ONNX engine keeps at the card's floor."""
    onnx = OnnxYoloDetector(MODEL).load()
    ov = OpenVinoYoloDetector(MODEL, precision="default").load()
    theirs = _boxes(onnx, photos_and_renders)
    matched, total = agreement(_boxes(ov, photos_and_renders), theirs, iou_min=0.9)
    assert total >= 5 and matched >= 0.9 * total


@needs_openvino
def test_backbone_on_openvino_gives_the_same_features():
    from vision.embedding import Backbone

    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in REAL[:4]]
    ort, ov = Backbone(), Backbone(engine="openvino", precision="f32")
    a, b = ort.embed_many(images), ov.embed_many(images)
    assert np.all(np.sum(a * b, axis=1) > 0.9999)  # cosine of L2-normalised embeddings
    pa, pb = ort.patch_features(images[0]), ov.patch_features(images[0])
    assert pa.shape == pb.shape == (28, 28, 152)
    assert np.abs(pa - pb).max() < 1e-3 * max(1.0, float(np.abs(pa).max()))


def test_an_unknown_backbone_engine_is_refused():
    from vision.embedding import Backbone, BackboneError

    with pytest.raises(BackboneError, match="unknown"):
        Backbone(engine="tensorrt")


def _config(tmp_path: Path, detector: str):
    path = tmp_path / "station.toml"
    path.write_text(f'[station]\ndata_dir = "data"\n\n[detector]\n{detector}\n', encoding="utf-8")
    return load_config(path)


def test_config_types_and_onnx_unchanged(tmp_path):
    assert type(_config(tmp_path, "threads = 2").detector) is OnnxDetectorConfig
    assert type(_config(tmp_path, 'type = "onnx"').detector) is OnnxDetectorConfig
    ov = _config(tmp_path, 'type = "openvino"\nprecision = "f32"\nmodel = "m.onnx"').detector
    assert type(ov) is OpenVinoDetectorConfig and ov.precision == "f32" and ov.model == tmp_path / "m.onnx"
    assert type(_config(tmp_path, 'type = "auto"').detector) is AutoDetectorConfig
    with pytest.raises(ConfigError) as bad:
        _config(tmp_path, 'type = "openvino"\nprecision = "int4"')
    assert any(p.startswith("detector.precision:") for p in bad.value.problems)
    with pytest.raises(ConfigError) as onnx_precision:  # precision belongs to OpenVINO only
        _config(tmp_path, 'type = "onnx"\nprecision = "f32"')
    assert any("detector.precision: unknown key" in p for p in onnx_precision.value.problems)
    with pytest.raises(ConfigError) as unknown:
        _config(tmp_path, 'type = "tensorrt"')
    assert "openvino" in str(unknown.value) and "auto" in str(unknown.value)


def test_auto_falls_back_to_onnx_runtime_and_says_so(monkeypatch, caplog):
    import models.openvino_yolo as engines

    monkeypatch.setattr(engines, "openvino_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="models.openvino_yolo"):
        det = make_engine_detector("auto", MODEL)
    assert type(det) is OnnxYoloDetector and det.engine == "onnxruntime"
    assert any("ONNX Runtime" in r.message and "OpenVINO is not installed" in r.message for r in caplog.records)


def test_openvino_asked_for_but_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(ModelError, match="OpenVINO is not installed"):
        OpenVinoYoloDetector(MODEL).load()


@needs_openvino
def test_boot_picks_the_engine_for_detector_and_backbone(tmp_path, caplog):
    from station.app import make_detector
    from vision.embedding import default_backbone, use_backbone_engine

    try:
        with caplog.at_level(logging.INFO, logger="models.openvino_yolo"):
            det = make_detector(_config(tmp_path, 'type = "auto"'))
        assert type(det) is OpenVinoYoloDetector
        assert any("OpenVINO" in r.message and "installed" in r.message for r in caplog.records)
        assert default_backbone().engine == "openvino"
        assert (tmp_path / "data" / "cache" / "openvino").is_dir()  # compiled blobs under the data dir
        det = make_detector(_config(tmp_path, 'type = "onnx"'))
        assert type(det) is OnnxYoloDetector and default_backbone().engine == "onnxruntime"
    finally:
        use_backbone_engine("onnxruntime")  # other tests in this process get the shipped default back


def test_bad_precision_is_refused_before_anything_loads():
    with pytest.raises(ModelError, match="precision"):
        OpenVinoYoloDetector(MODEL, precision="int4")


@needs_openvino
def test_bench_runs_without_ultralytics(tmp_path):
    from models.training.bench import run_benchmark

    report = run_benchmark(MODEL, None, n_images=6, views_per_item=3, cache=tmp_path, progress=None,
                           round_pairs=1, ultralytics=False)
    assert set(report["latency_ms_per_item"]) == {"ours_onnx", "ours_whole_graph", "openvino_f32",
                                                  "openvino_default"}
    assert "agreement_with_ultralytics_onnx" not in report
    assert report["agreement_with_baseline"]["openvino_f32"]["share"] == 1.0
    assert set(report["faster_than_baseline_p50"]) == {"ours_whole_graph", "openvino_f32", "openvino_default"}


INT8 = REPO / "models" / "weights" / "defects.int8.xml"


@needs_openvino
@pytest.mark.skipif(not INT8.is_file(), reason="no int8 detector shipped (models/weights/defects.int8.xml)")
def test_int8_trunk_finds_what_the_float_engine_finds(photos_and_renders):
    """Int8 moves scores and boxes more than float rounding: most boxes of the float engine, same class, IoU 0.5
    (the mAP50 criterion; its accuracy gate is mAP50 on held-out renders: the card's engines.openvino_int8)."""
    onnx = OnnxYoloDetector(MODEL).load()
    int8 = OpenVinoYoloDetector(MODEL, precision="f32", int8_trunk=INT8).load()
    assert int8.class_names == onnx.class_names and int8.class_thresholds == onnx.class_thresholds
    theirs = _boxes(onnx, photos_and_renders)
    matched, total = agreement(_boxes(int8, photos_and_renders), theirs, iou_min=0.5)
    assert total >= 5 and matched >= 0.75 * total


@needs_openvino
def test_int8_asked_for_without_a_variant_runs_float_and_says_so(tmp_path, caplog):
    import shutil

    model = tmp_path / "defects.onnx"
    shutil.copy(MODEL, model)
    shutil.copy(MODEL.with_suffix(".yaml"), model.with_suffix(".yaml"))
    with caplog.at_level(logging.INFO, logger="models.openvino_yolo"):
        det = make_engine_detector("openvino", model, int8=True)
    assert det.int8_trunk is None
    assert any("no int8 variant defects.int8.xml" in r.message for r in caplog.records)
    assert any("OpenVINO (float" in r.message for r in caplog.records)
    with pytest.raises(ModelError, match="int8 trunk .* not found"):
        OpenVinoYoloDetector(model, int8_trunk=tmp_path / "none.int8.xml").load()


def test_quantize_refuses_bad_input_with_one_line(tmp_path, capsys):
    from models.quantize import main

    assert main(["detector", "--model", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "x.xml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["detector", "--model", str(MODEL), "--out", str(tmp_path / "x.onnx"), "--renders", "0"]) == 2
    assert ".xml" in capsys.readouterr().err
    assert main(["gate-detector", "--model", str(MODEL), "--int8", str(tmp_path / "none.xml")]) == 2
    assert "models.quantize detector" in capsys.readouterr().err
