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


def _station(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def _train(config: Path, out: Path, workdir: Path) -> None:
    proc = _station("train", str(config), "--out", str(out), "--workdir", str(workdir), cwd=workdir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_smoke_training_exports_onnx_and_model_card(tmp_path):
    out = tmp_path / "smoke.onnx"
    _train(REPO / "models/configs/smoke.toml", out, tmp_path / "work")
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

    # A second stage fine-tuned from the first's checkpoint carries the first stage in its card.
    stage2 = tmp_path / "stage2.toml"
    stage2.write_text((REPO / "models/configs/smoke.toml").read_text().replace(
        "[train]\n", f"[train]\nmodel = \"{out.with_suffix('.pt')}\"\n").replace("size = 128", "size = 96"))
    out2 = tmp_path / "stage2" / "smoke.onnx"
    _train(stage2, out2, tmp_path / "work2")
    card2 = yaml.safe_load(out2.with_suffix(".yaml").read_text())
    assert [s["dataset_sha256"] for s in card2["training"]["stages"]] == [card["dataset"]["sha256"]]
    assert card2["dataset"]["sha256"] != card["dataset"]["sha256"]
    assert card2["architecture"] == card["architecture"]

    # The two stages averaged (station average): each weight is the mean of the stages', the card lists both
    # stages, and the result runs in our engine.
    import torch

    soup = tmp_path / "soup" / "smoke.onnx"
    proc = _station("average", str(out.with_suffix(".pt")), str(out2.with_suffix(".pt")), "--out", str(soup),
                    "--workdir", str(tmp_path / "work3"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = [torch.load(p.with_suffix(".pt"), weights_only=False)["model"].float().state_dict()
               for p in (out, out2, soup)]
    key = next(k for k, v in weights[0].items() if v.is_floating_point() and not torch.equal(v, weights[1][k]))
    assert torch.allclose(weights[2][key], (weights[0][key] + weights[1][key]) / 2, atol=2e-3)  # stored as fp16
    card3 = yaml.safe_load(soup.with_suffix(".yaml").read_text())
    assert [s["dataset_sha256"] for s in card3["training"]["stages"]] == \
        [card["dataset"]["sha256"], card2["dataset"]["sha256"]]
    assert card3["training"]["sources"] == [str(out.with_suffix(".pt")), str(out2.with_suffix(".pt"))]
    assert (soup.parent / "smoke.source2.results.csv").exists() and "metrics_val" not in card3
    assert OnnxYoloDetector(soup).load().class_names == DETECTOR_CLASSES

    # A source checkpoint that is not there is refused with a clear message, not a traceback.
    proc = _station("average", str(out.with_suffix(".pt")), str(tmp_path / "missing.pt"), "--out", str(soup),
                    cwd=tmp_path)
    assert proc.returncode == 2 and "missing.pt not found" in proc.stderr and "Traceback" not in proc.stderr
