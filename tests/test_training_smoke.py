"""`station train` end to end on a tiny generated set (1 epoch, 64 px), so the training path cannot rot.

Needs the [train] extra (CI installs it: .ci/run runs `make train-deps`); skipped with a reason otherwise.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.onnx_yolo import OnnxYoloDetector
from station.domain import DETECTOR_CLASSES

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("torch") is None,
    reason="training extra not installed (make train-deps)",
)


def test_smoke_training_exports_onnx_and_model_card(tmp_path):
    out = tmp_path / "smoke.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "station.cli", "train", str(REPO / "models/configs/smoke.toml"), "--out", str(out),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert card["classes"] == list(DETECTOR_CLASSES)
    assert card["input_size"] == [64, 64]
    assert set(card["thresholds"]) == {"confidence", "iou"}
    assert len(card["dataset"]["sha256"]) == 64
    assert "station train" in card["training"]["command"] and card["training"]["date"]
    assert "mAP50" in card["metrics_val"]
    assert out.with_name("smoke.results.csv").exists() and out.with_suffix(".pt").exists()
    det = OnnxYoloDetector(out).load()  # the exported model fits our engine
    assert det.class_names == DETECTOR_CLASSES and det.input_size == (64, 64)
