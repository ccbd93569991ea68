"""A deliberately weakened detector: a test and demonstration aid, never a model to ship.

``weaken`` takes trained YOLOv8 weights and makes the detector blind to some classes by lowering those
classes' logit biases in the classification branch of every scale of the Detect head (``cv3[i][-1].bias``):
the features and every other class stay exactly as they were, but the damaged classes' scores fall far below
any operating threshold. The learning-loop test (tests/test_learning_loop.py) activates such a model, lets a
supervisor correct its misses and checks that a fine-tune on those corrections wins the damaged classes back.
Imports torch/ultralytics only when called (the [train] extra).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

from models.card import write_card
from vision.synth import DEFECT_CLASSES

DEFAULT_DROP = 8.0  # logit units: sigmoid(x - 8) < 0.25 for any x below ~6.9, i.e. every realistic score


def weaken(pt: Path, classes: tuple[str, ...] | list[str], out: Path, drop: float = DEFAULT_DROP,
           imgsz: int = 320, opset: int = 18, simplify: bool = True, workdir: Path | None = None) -> Path:
    """Write ``out`` (ONNX, with ``out``.pt and a model card ``out``.yaml beside it): the weights ``pt`` with the
    classification bias of each of ``classes`` lowered by ``drop`` in every detection scale. Returns ``out``.

    The card is ``pt``'s card (when there is one) less its measurements and inference size: the weak model runs
    at ``imgsz`` with the same operating thresholds. ``workdir`` holds ultralytics' offline settings
    (default: ``out``'s folder/.yolo)."""
    unknown = [c for c in classes if c not in DEFECT_CLASSES]
    if unknown or not classes:
        raise ValueError(f"classes to weaken must be some of {', '.join(DEFECT_CLASSES)}; got {list(classes)}")
    import torch
    from ultralytics import YOLO  # heavy and optional: imported only here

    from models.training.run import export_onnx, prepare_offline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prepare_offline(Path(workdir) if workdir is not None else out.parent / ".yolo")
    model = YOLO(str(pt))
    head = model.model.model[-1]
    ids = [DEFECT_CLASSES.index(c) for c in classes]
    with torch.no_grad():
        for branch in [head.cv3] + ([head.one2one_cv3] if getattr(head, "one2one_cv3", None) is not None else []):
            for scale in branch:
                scale[-1].bias[ids] -= drop
    weak_pt = out.with_suffix(".pt")
    model.save(str(weak_pt))
    export_onnx(weak_pt, out, imgsz, opset, simplify)
    src_card = Path(pt).with_suffix(".yaml")
    card = yaml.safe_load(src_card.read_text()) if src_card.exists() else {
        "task": "detect", "classes": list(DEFECT_CLASSES), "input_size": [imgsz, imgsz],
        "thresholds": {"confidence": 0.25, "iou": 0.45}}
    card.update({"name": out.stem, "file": out.name, "input_size": [imgsz, imgsz],
                 "weakened": {"from": str(pt), "classes": list(classes), "bias_drop": drop,
                              "date": dt.date.today().isoformat(),
                              "note": "test aid (models.training.weaken): blind to these classes on purpose"}})
    for key in ("metrics_val", "metrics_test", "inference_size", "inference_size_note"):
        card.pop(key, None)  # the source's measurements and size choice are not this model's: it runs at imgsz
    write_card(out.with_suffix(".yaml"), card)
    return out
