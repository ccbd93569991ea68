"""Evaluation maths on hand-computed cases, and `station eval` end to end on a generated dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from models.dataset import DatasetSpec, write_dataset
from models.evaluate import average_precision, box_iou, match_predictions


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0]])


def test_average_precision_perfect_and_half():
    # Perfect detection gives 0.995, not 1: the envelope drops to 0 at the sentinel point recall = 1 and the
    # last of the 101 samples averages the two (the same quirk as ultralytics, so numbers compare).
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(0.995)
    # One hit at rank 1 out of two labels, then a false positive: precision 1 up to recall 0.5, then the
    # envelope falls linearly to 0 at recall 1 (ultralytics' interpolation): 0.5 + 0.25 / 2 = 0.625.
    assert average_precision(np.array([0.5, 0.5]), np.array([1.0, 0.5])) == pytest.approx(0.625, abs=0.01)


def test_match_predictions_greedy_same_class():
    pred_cls = np.array([0, 0, 1])
    true_cls = np.array([0, 1])
    # pred 0 and pred 1 both overlap label 0; pred 0 overlaps better and takes it. pred 2 is class 1 on label 1
    # but only at IoU 0.6.
    iou = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.6]])
    correct = match_predictions(pred_cls, true_cls, iou)
    assert correct[:, 0].tolist() == [True, False, True]  # IoU 0.50
    assert correct[:, 3].tolist() == [True, False, False]  # IoU 0.65
    assert correct[:, 9].tolist() == [False, False, False]  # IoU 0.95


def test_eval_command_writes_json_and_plots(tmp_path):
    write_dataset(tmp_path / "ds", DatasetSpec(train=1, val=1, test=6, size=256))
    proc = subprocess.run([sys.executable, "-m", "station.cli", "eval", str(tmp_path / "ds"), "--json",
                           "--out", str(tmp_path / "ev")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["images"] == 6 and 0 <= report["mAP50"] <= 1 and 0 <= report["mAP50_95"] <= report["mAP50"]
    assert len(report["per_class"]) == 10 and len(report["confusion_matrix"]["counts"]) == 11
    assert sum(map(sum, report["confusion_matrix"]["counts"])) > 0
    for key in ("pr_curves", "confusion_matrix"):
        assert (tmp_path / "ev" / f"{key}.png").stat().st_size > 1000


def test_eval_bad_dataset_is_a_clean_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "station.cli", "eval", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "images/test" in proc.stderr and "Traceback" not in proc.stderr
