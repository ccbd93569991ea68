"""Model card bookkeeping: a fine-tuned stage's card carries the stages before it, and `station eval --record`
writes a held-out result into the card of the model it measured."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.card import (CardError, averaged_card, parent_card_path, read_card, with_lineage, with_test_metrics,
                         write_card)
from models.dataset import DatasetSpec, write_dataset

REPO = Path(__file__).resolve().parent.parent


def _card(model: str, sha: str, map50: float, stages: list | None = None) -> dict:
    training = {"command": f"station train from {model}", "date": "2026-11-20",
                "config": {"train": {"model": model, "imgsz": 416, "epochs": 10}}}
    if stages is not None:
        training["stages"] = stages
    return {"name": "defects", "architecture": model, "dataset": {"sha256": sha, "spec": {"train": 1200}},
            "metrics_val": {"mAP50": map50}, "training": training}


def test_lineage_lists_every_earlier_stage_oldest_first():
    first = _card("yolov8n.yaml", "a" * 64, 0.5)
    second = with_lineage(_card("build/stage1/defects.pt", "b" * 64, 0.7), first)
    third = with_lineage(_card("build/stage2/defects.pt", "c" * 64, 0.8), second)
    stages = third["training"]["stages"]
    assert [s["dataset_sha256"] for s in stages] == ["a" * 64, "b" * 64]
    assert [s["metrics_val"]["mAP50"] for s in stages] == [0.5, 0.7]
    assert stages[1]["start"] == "build/stage1/defects.pt" and stages[0]["imgsz"] == 416
    assert third["architecture"] == "yolov8n.yaml"  # the first stage's, not the checkpoint's path
    assert third["dataset"]["sha256"] == "c" * 64 and third["metrics_val"]["mAP50"] == 0.8  # its own
    assert "stages" not in second["training"]["stages"][0]  # no nesting: the list is flat
    assert with_lineage(first, None) is first


def test_averaged_card_lists_each_stage_once_and_drops_the_sources_measurements():
    first = _card("yolov8n.yaml", "a" * 64, 0.5)
    second = with_lineage(_card("build/stage1/defects.pt", "b" * 64, 0.7), first)
    third = with_lineage(_card("build/stage2/defects.pt", "c" * 64, 0.8), second)
    for card in (second, third):
        card.update(classes=["scratch", "dent"], input_size=[416, 416], thresholds={"confidence": 0.25})
    third["metrics_test"] = {"heldout": {"mAP50": 0.9}}
    soup = averaged_card([second, third], ["s2.pt", "s3.pt"], "out/defects.onnx", "station average s2.pt s3.pt")
    assert [s["dataset_sha256"] for s in soup["training"]["stages"]] == ["a" * 64, "b" * 64, "c" * 64]
    assert soup["training"]["sources"] == ["s2.pt", "s3.pt"] and soup["training"]["command"].startswith("station")
    assert soup["classes"] == ["scratch", "dent"] and soup["thresholds"] == {"confidence": 0.25}
    assert soup["architecture"] == "yolov8n.yaml" and soup["file"] == "defects.onnx"
    assert not {"metrics_val", "metrics_test", "dataset"} & set(soup)  # the sources' scores are not the soup's
    other = dict(third, classes=["scratch", "dent", "crack"])
    with pytest.raises(CardError, match="classes"):
        averaged_card([second, other], ["s2.pt", "x.pt"], "o.onnx", "c")
    with pytest.raises(CardError, match="at least two"):
        averaged_card([second], ["s2.pt"], "o.onnx", "c")


def test_parent_card_only_for_our_checkpoints(tmp_path):
    pt = tmp_path / "defects.pt"
    pt.write_bytes(b"weights")
    assert parent_card_path(str(pt)) is None  # no card beside it: a foreign checkpoint
    write_card(pt.with_suffix(".yaml"), _card("yolov8n.yaml", "a" * 64, 0.5))
    assert parent_card_path(str(pt)) == pt.with_suffix(".yaml")
    assert parent_card_path("yolov8n.yaml") is None  # training from a model YAML starts a lineage


def test_test_metrics_are_added_beside_earlier_ones():
    report = {"images": 200, "mAP50": 0.9, "mAP50_95": 0.6,
              "per_class": [{"class": "scratch", "AP50": 0.8}, {"class": "dent", "AP50": 1.0}]}
    card = with_test_metrics({"metrics_test": {"shifted": {"mAP50": 0.5}}}, "heldout", report, "station eval x")
    assert card["metrics_test"]["shifted"] == {"mAP50": 0.5}
    held = card["metrics_test"]["heldout"]
    assert held["mAP50"] == 0.9 and held["per_class_AP50"] == {"scratch": 0.8, "dent": 1.0}
    assert held["command"] == "station eval x" and held["images"] == 200
    with pytest.raises(CardError, match="record name"):
        with_test_metrics({}, "held out!", report, "x")


def test_unreadable_card_is_a_clear_error(tmp_path):
    with pytest.raises(CardError, match="not found"):
        read_card(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    with pytest.raises(CardError, match="not valid YAML"):
        read_card(tmp_path / "bad.yaml")


def _eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station.cli", "eval", *args], capture_output=True, text=True,
                          timeout=300)


def test_eval_record_writes_the_result_into_the_models_card(tmp_path):
    model = tmp_path / "defects.onnx"
    shutil.copy(REPO / "models/weights/defects.onnx", model)
    shutil.copy(REPO / "models/weights/defects.yaml", model.with_suffix(".yaml"))
    before = read_card(model.with_suffix(".yaml"))
    write_dataset(tmp_path / "ds", DatasetSpec(train=0, val=0, test=4, size=256, seed=7))
    proc = _eval(str(tmp_path / "ds"), "--model", str(model), "--record", "tiny", "--json")
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    after = read_card(model.with_suffix(".yaml"))
    tiny = after["metrics_test"]["tiny"]
    assert tiny["mAP50"] == report["mAP50"] and tiny["images"] == 4
    assert "--record tiny" in tiny["command"]
    assert {k: v for k, v in after.items() if k != "metrics_test"} == \
        {k: v for k, v in before.items() if k != "metrics_test"}


def test_eval_record_refuses_a_bad_name_or_a_missing_card(tmp_path):
    model = tmp_path / "defects.onnx"
    shutil.copy(REPO / "models/weights/defects.onnx", model)
    write_dataset(tmp_path / "ds", DatasetSpec(train=0, val=0, test=2, size=256, seed=7))
    proc = _eval(str(tmp_path / "ds"), "--model", str(model), "--record", "held out")
    assert proc.returncode == 2 and "record name" in proc.stderr and "Traceback" not in proc.stderr
    proc = _eval(str(tmp_path / "ds"), "--model", str(model), "--record", "heldout")
    assert proc.returncode == 2 and "model card" in proc.stderr and "not found" in proc.stderr
    assert not model.with_suffix(".yaml").exists()
    assert yaml.safe_load((tmp_path / "ds/eval_test/eval.json").read_text())["images"] == 2  # report kept
