"""The defect detector's evaluation ladder: from its own renderer's style to real photos no one here made.

    python -m station.detector_ladder --model models/weights/defects.onnx --real build/real \\
        [--heldout build/testsets/heldout] [--independent build/testsets/independent] [--json]

Rungs (each skipped, and said so, when its data is absent):
1. own held-out: rendered by ``vision.synth`` with seeds never trained on (mAP50);
2. independent generator: ``models.independent_render``, written without reading ``vision.synth`` (mAP50);
3. real undamaged photos (``models.real_photos`` test splits, and the undamaged photos of the defect sets):
   the share of images with any detection at the card's thresholds, the share with any detection the rules
   keep at all (``min_score``: at least a supervisor's look), detections per image, and the grade the rules
   give on those detections alone (a neutral item returned with no reason given);
4. real defect photos (tin cans with dents and rust, KolektorSDD cracks): image AUROC of the maximum score,
   defective against undamaged photos of the same set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from models.evaluate import evaluate
from models.onnx_yolo import OnnxYoloDetector
from models.real_photos import images
from station.domain import CatalogueItem, Grade, ReturnReason, ReturnRequest
from station.pipeline import detections_to_findings
from station.rules.engine import RuleSet, RulesEngine

# (set, split, label): the undamaged real photos, per set; the first is the one training's set left out.
NEGATIVE_SETS = (("label_recognition", "test"), ("eth80", "test"), ("shelves", "test"), ("cans", "test"),
                 ("kolektor", "test"))
DEFECT_SETS = ("cans", "kolektor")
_GRADE_ORDER = [g.value for g in Grade]


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a defective > score of an undamaged), ties counted half."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return img


def negatives(detector: OnnxYoloDetector, files: list[Path], rules: RulesEngine) -> dict:
    """What the detector and the rules make of undamaged real photos."""
    item = CatalogueItem(sku="REAL-NEGATIVE", category="general", brand="any")
    request = ReturnRequest(order_id="LADDER", sku=item.sku, reason=ReturnReason.NO_REASON_7DAY)
    min_score = rules.rules.settings.min_score
    confirmed = kept = boxes = 0
    grades: dict[str, int] = {}
    for path in files:
        det = detector.detect([_read(path)])[0]
        findings = detections_to_findings("front", det, getattr(detector, "class_thresholds", None) or None)
        boxes += sum(1 for f in findings if f.kind != "uncertain_defect")
        confirmed += any(f.kind != "uncertain_defect" for f in findings)
        kept += any(f.score >= min_score for f in findings)
        grade = rules.decide(request, item, findings).grade
        grades[grade.value] = grades.get(grade.value, 0) + 1
    n = max(len(files), 1)
    below_b = sum(v for g, v in grades.items() if _GRADE_ORDER.index(g) > _GRADE_ORDER.index(Grade.B.value))
    return {"images": len(files), "with_detection": round(confirmed / n, 4), "reviewed_or_worse": round(kept / n, 4),
            "detections_per_image": round(boxes / n, 3), "below_B": round(below_b / n, 4), "grades": grades}


def defect_auroc(detector: OnnxYoloDetector, defective: list[Path], good: list[Path]) -> dict:
    saved = detector.confidence
    detector.confidence = 0.001  # every candidate: the maximum score is the image's score
    try:
        def top(files):
            out = []
            for p in files:
                det = detector.detect([_read(p)])[0]
                out.append(float(det.score.max()) if len(det) else 0.0)
            return np.array(out)
        pos, neg = top(defective), top(good)
    finally:
        detector.confidence = saved
    return {"defective": len(pos), "good": len(neg), "auroc": round(auroc(pos, neg), 4)}


def ladder(model: Path, real: Path | None, heldout: Path | None, independent: Path | None) -> dict:
    detector = OnnxYoloDetector(model).load()
    out: dict = {"model": str(model), "thresholds": getattr(detector, "class_thresholds", None) or
                 {"all": detector.confidence}}
    for name, folder in (("heldout", heldout), ("independent", independent)):
        if folder is not None and (folder / "images" / "test").is_dir():
            out[name] = {"mAP50": round(evaluate(detector, folder, "test").map50, 4)}
        else:
            out[name] = {"skipped": f"no set at {folder}"}
    rules = RulesEngine(RuleSet.load())
    out["real_negatives"] = {}
    out["real_defects"] = {}
    if real is not None:
        for name, split in NEGATIVE_SETS:
            files = images(real, name, split, "good")
            if files:
                out["real_negatives"][name] = negatives(detector, files, rules)
        for name in DEFECT_SETS:
            bad, good = images(real, name, "test", "defective"), images(real, name, "test", "good")
            if bad and good:
                out["real_defects"][name] = defect_auroc(detector, bad, good)
    return out


def print_ladder(result: dict) -> None:
    print(f"model {result['model']}")
    for name in ("heldout", "independent"):
        r = result[name]
        print(f"  {name:<12} " + (f"mAP50 {r['mAP50']:.3f}" if "mAP50" in r else r["skipped"]))
    print("  real undamaged photos   images  with detection  kept by rules  boxes/image  graded below B")
    for name, r in result["real_negatives"].items():
        print(f"    {name:<20} {r['images']:>7}  {r['with_detection']:>13.1%}  {r['reviewed_or_worse']:>12.1%}"
              f"  {r['detections_per_image']:>11.2f}  {r['below_B']:>14.1%}")
    if not result["real_negatives"]:
        print("    skipped: no real photos extracted (python -m models.real_photos)")
    for name, r in result["real_defects"].items():
        print(f"  real defects {name:<10} image AUROC {r['auroc']:.3f} ({r['defective']} defective, {r['good']} good)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/weights/defects.onnx"))
    ap.add_argument("--real", type=Path, default=Path("build/real"))
    ap.add_argument("--heldout", type=Path, default=None)
    ap.add_argument("--independent", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.model.is_file():
        print(f"model {args.model} not found: give --model an ONNX file", file=sys.stderr)
        return 2
    try:
        result = ladder(args.model, args.real, args.heldout, args.independent)
    except ValueError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_ladder(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
