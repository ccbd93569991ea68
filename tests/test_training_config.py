"""Training configuration and run bookkeeping that need no training extra: the pinned config file is strict,
and the model card's validation metrics are those of the epoch that was exported."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models.training.config import TrainingConfig
from models.training.run import final_metrics

HEADER = ("epoch,metrics/precision(B),metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B)\n")


def test_card_metrics_come_from_the_exported_epoch(tmp_path):
    csv = tmp_path / "results.csv"
    # Epochs 2 and 3 tie on mAP50-95: ultralytics keeps the first as best.pt.
    csv.write_text(HEADER + "1,0.5,0.4,0.60,0.30\n2,0.6,0.5,0.70,0.45\n3,0.7,0.6,0.75,0.45\n4,0.8,0.7,0.80,0.40\n")
    assert final_metrics(csv, "best") == {"precision": 0.6, "recall": 0.5, "mAP50": 0.7, "mAP50_95": 0.45}
    assert final_metrics(csv, "last") == {"precision": 0.8, "recall": 0.7, "mAP50": 0.8, "mAP50_95": 0.4}


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "train.toml"
    path.write_text(f'name = "defects"\n{extra}\n')
    return path


def test_checkpoint_and_primary_repeats_are_checked(tmp_path):
    cfg = TrainingConfig.load(_config(tmp_path, '[train]\ncheckpoint = "last"\n[data.primary_repeats]\nscratch = 3'))
    assert cfg.train.checkpoint == "last" and cfg.data.primary_repeats == {"scratch": 3}
    for bad, words in (('[train]\ncheckpoint = "middle"', "checkpoint"),
                       ("[data.primary_repeats]\nscuff = 2", "unknown classes"),
                       ("[data.primary_repeats]\nscratch = 0", "at least 1")):
        with pytest.raises((ValidationError, ValueError), match=words):
            TrainingConfig.load(_config(tmp_path, bad))
