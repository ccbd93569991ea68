"""Offline ultralytics training, ONNX export and model card. Imports torch/ultralytics only when called."""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import sys
from pathlib import Path

from models.card import parent_card_path, read_card, with_lineage, write_card
from models.dataset import DatasetSpec, write_dataset
from models.training.config import TrainingConfig
from vision.synth import DEFECT_CLASSES

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)


def prepare_offline(workdir: Path) -> bool:
    """Point ultralytics at a project-owned settings folder so it never reaches for the network.

    Returns whether a font was placed (plots need one; without it plots are switched off).
    """
    cfg_dir = workdir / "yolo_config"
    (cfg_dir / "Ultralytics").mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(cfg_dir)
    for font in _FONT_CANDIDATES:
        if Path(font).exists():
            for name in ("Arial.ttf", "Arial.Unicode.ttf"):
                dst = cfg_dir / "Ultralytics" / name
                if not dst.exists():
                    shutil.copy(font, dst)
            return True
    return False


def final_metrics(results_csv: Path, checkpoint: str = "last") -> dict[str, float]:
    """Validation metrics of the exported epoch: the last row, or for "best" the row ultralytics chose (its
    fitness is mAP50-95; the first of equals)."""
    with open(results_csv, newline="") as fh:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(fh)]
    key = "metrics/mAP50-95(B)"
    row = rows[-1]
    if checkpoint == "best" and all(key in r for r in rows):
        row = max(rows, key=lambda r: float(r[key]))  # max returns the first of equals, as ultralytics keeps it
    keys = {"metrics/mAP50(B)": "mAP50", "metrics/mAP50-95(B)": "mAP50_95",
            "metrics/precision(B)": "precision", "metrics/recall(B)": "recall"}
    return {short: round(float(row[k]), 4) for k, short in keys.items() if k in row}


def export_onnx(pt: Path, output: Path, imgsz: int, opset: int = 18, simplify: bool = True) -> Path:
    """Export ultralytics weights ``pt`` to ONNX at ``output`` (dynamic batch) and keep a copy of the weights
    beside it (``output`` with suffix .pt); the model card is the caller's. Returns ``output``."""
    from ultralytics import YOLO  # heavy and optional: imported only here

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    exported = Path(YOLO(str(pt)).export(format="onnx", opset=opset, simplify=simplify, imgsz=imgsz, dynamic=True))
    if exported.resolve() != output.resolve():
        shutil.copy(exported, output)
    if Path(pt).resolve() != output.with_suffix(".pt").resolve():
        shutil.copy(pt, output.with_suffix(".pt"))
    return output


def train(config: TrainingConfig, workdir: Path, output: Path, command: str, dataset_dir: Path | None = None,
          progress=print) -> Path:
    """Generate the dataset (unless given), train, export ONNX next to a model card; return the ONNX path."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    fonts = prepare_offline(workdir)
    if dataset_dir is None:
        dataset_dir = workdir / "dataset"
        d = config.data
        progress(f"rendering dataset into {dataset_dir} ({d.train}/{d.val}/{d.test} images)")
        manifest = write_dataset(dataset_dir, DatasetSpec(d.train, d.val, d.test, d.seed, d.size, d.clean_share,
                                                             primary_repeats=tuple(sorted(d.primary_repeats.items())),
                                                             real_photos=d.real_photos,
                                                             negative_share=d.negative_share,
                                                             composite_share=d.composite_share,
                                                             photo_share=d.photo_share))
    else:
        import json
        manifest = json.loads((dataset_dir / "manifest.json").read_text())

    from ultralytics import YOLO  # heavy and optional: imported only here

    t = config.train
    model = YOLO(t.model)
    args = t.model_dump(exclude={"model", "checkpoint"})
    run_dir = workdir / "runs"
    model.train(data=str(dataset_dir / "data.yaml"), project=str(run_dir), name=config.name, exist_ok=True,
                deterministic=True, plots=fonts, amp=False, verbose=False, **args)
    weights = run_dir / config.name / "weights" / f"{t.checkpoint}.pt"
    output = export_onnx(weights, output, t.imgsz, config.export.opset, config.export.simplify)
    results = run_dir / config.name / "results.csv"
    shutil.copy(results, output.with_name(output.stem + ".results.csv"))
    card = {
        "name": config.name,
        "file": output.name,
        "task": "detect",
        "architecture": t.model,
        "classes": list(DEFECT_CLASSES),
        "input_size": [t.imgsz, t.imgsz],
        "thresholds": {"confidence": config.export.conf_threshold, "iou": config.export.iou_threshold},
        "dataset": {"generator": "models.dataset.write_dataset", "sha256": manifest["sha256"],
                    "spec": manifest["spec"],
                    # the real photos' source, licence, pinned commit and content hash (models.real_photos)
                    **({"real_photos": manifest["real_photos"]} if "real_photos" in manifest else {})},
        "metrics_val": final_metrics(results, t.checkpoint),
        "training": {"command": command, "config": config.model_dump(), "date": dt.date.today().isoformat(),
                     "python": sys.version.split()[0]},
    }
    parent = parent_card_path(t.model)
    write_card(output.with_suffix(".yaml"), with_lineage(card, read_card(parent) if parent else None))
    return output
