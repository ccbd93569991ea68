"""Per-class confidence thresholds calibrated on real negatives and a labelled validation set of another style.

    station model thresholds --model models/weights/defects.onnx \\
        --negatives build/real/label_recognition/calib/good --negatives build/real/eth80/calib/good \\
        --validation build/testsets/shifted [--target 0.08] [--write]

Inputs, both collected with the detector decoding at its floor (the card's ``thresholds.confidence``):

* NEGATIVES: folders of real photos of undamaged products. Every detection on them is a false alarm; what
  counts is the share of negative images with ANY detection at or above its class's threshold (an image the
  station would grade on a defect that is not there).
* VALIDATION: a YOLO-format labelled set of another style than the training data. Predictions are matched to
  labels per class at IoU 0.5 once, at the floor (``models.evaluate.match_predictions``, ultralytics' greedy
  rule, as for mAP); precision and recall at a threshold t count the predictions scored >= t.

Method, per class c a threshold t_c in [floor, 0.95]:

1. Start: t_c maximises F1 on the validation set over the observed prediction scores of c in [floor, 0.95]
   (so t_c is the score of the weakest prediction kept: any lower threshold keeps the same predictions and
   only lets more false alarms through; ties: the lowest such score, which keeps the most recall), rounded
   down to 4 decimals (what the card stores). A class without validation labels or predictions starts at the
   floor.
2. Greedy raise: while, in any negative set (folder), the share of its images with any detection at or above
   its class threshold exceeds the target (default 0.08), consider for every class every step up to just above
   one of its observed negative scores (the smallest 4-decimal value above it, at most 0.95), and take the step
   with the least validation recall lost per negative image removed from a set still above the target (ties: the
   smaller raise, then class order). Each step removes at least one such image; when no step can (negatives
   scored above 0.95) the target is reported as not reached. The target holds per set because the sets differ
   in look: pooled, an easy set (packaging on tables, 1 % firing) hid a hard one (objects on cloth, 25 %).

Figures returned: the thresholds; per class the validation precision/recall at t_c and the share of negative
images with a detection of that class at or above t_c; overall the negative images with any detection at the
floor (one threshold for every class, as before calibration), at the F1 start and after. ``with_calibration``
stores them in the model card: ``thresholds.per_class`` (read by models/onnx_yolo.py) and
``thresholds.calibration``; ``thresholds.confidence`` stays the decode floor.

The greedy search and F1 start are pure functions on score arrays (``calibrate``); ``collect_negatives`` and
``collect_validation`` run a detector to fill them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from models.evaluate import DatasetError, box_iou, list_split, match_predictions, read_labels

CEILING = 0.95
DEFAULT_TARGET = 0.08
MATCH_IOU_COLUMN = 0  # match_predictions' first IoU threshold: 0.50
NEGATIVE_SUFFIXES = (".jpg", ".jpeg", ".png")


class CalibrationError(ValueError):
    """The inputs of a calibration are missing or unusable (folder, images)."""


# ------------------------------------------------------------------------------------------ score arrays


@dataclass(frozen=True, slots=True)
class NegativeScores:
    """Per negative image and class, the best detection score (0 where the class has none): (images, classes)."""

    classes: tuple[str, ...]
    best: np.ndarray  # (N_images, N_classes) float
    # (N_images,) int: which negative set (folder) each image came from; the target holds in every set, so a
    # set of another look (objects on cloth beside packaging on tables) is not averaged away by an easy one.
    group: np.ndarray | None = None

    @classmethod
    def from_detections(cls, classes: Sequence[str], per_image: Sequence[Sequence[tuple[int, float]]],
                        group: Sequence[int] | None = None) -> "NegativeScores":
        """``per_image``: for each image its detections as (class id, score); ``group``: its set's index."""
        best = np.zeros((len(per_image), len(classes)), np.float64)
        for i, dets in enumerate(per_image):
            for c, s in dets:
                best[i, int(c)] = max(best[i, int(c)], float(s))
        if group is not None and len(group) != len(per_image):
            raise CalibrationError(f"{len(group)} set indices for {len(per_image)} negative images")
        return cls(tuple(classes), best, None if group is None else np.asarray(group, np.int64))

    @property
    def images(self) -> int:
        return int(self.best.shape[0])

    def groups(self) -> np.ndarray:
        """(N_images,) set index per image (all 0 when the images were given as one set)."""
        return np.zeros(self.images, np.int64) if self.group is None else self.group


@dataclass(frozen=True, slots=True)
class ValidationScores:
    """Validation predictions per class: scores and whether each matched a label (IoU 0.5); labels per class."""

    classes: tuple[str, ...]
    scores: tuple[np.ndarray, ...]  # per class, (N_pred,) float
    tp: tuple[np.ndarray, ...]  # per class, (N_pred,) bool
    labels: tuple[int, ...]  # per class, labelled instances
    images: int = 0

    @classmethod
    def from_arrays(cls, classes: Sequence[str], pred_cls: np.ndarray, scores: np.ndarray, tp: np.ndarray,
                    true_cls: np.ndarray, images: int = 0) -> "ValidationScores":
        pred_cls, scores, tp, true_cls = (np.asarray(pred_cls), np.asarray(scores, np.float64),
                                          np.asarray(tp, bool), np.asarray(true_cls))
        return cls(tuple(classes), tuple(scores[pred_cls == c] for c in range(len(classes))),
                   tuple(tp[pred_cls == c] for c in range(len(classes))),
                   tuple(int((true_cls == c).sum()) for c in range(len(classes))), images)

    def counts(self, c: int, ts) -> tuple[np.ndarray, np.ndarray]:
        """(kept predictions, true positives among them) of class ``c`` at each threshold in ``ts``."""
        order = np.argsort(-self.scores[c], kind="stable")
        desc = self.scores[c][order]
        cum_tp = np.concatenate(([0], np.cumsum(self.tp[c][order])))
        kept = np.searchsorted(-desc, -np.asarray(ts, np.float64), side="right")  # scores >= t
        return kept, cum_tp[kept]

    def precision_recall(self, c: int, t: float) -> tuple[float, float]:
        kept, tp = (int(v[0]) for v in self.counts(c, [t]))
        return (tp / kept if kept else 0.0), (tp / self.labels[c] if self.labels[c] else 0.0)

    def recall_at(self, c: int, ts) -> np.ndarray:
        _, tp = self.counts(c, ts)
        return tp / self.labels[c] if self.labels[c] else np.zeros(len(tp))

    def recall(self, c: int, t: float) -> float:
        return float(self.recall_at(c, [t])[0])


def best_f1_threshold(val: ValidationScores, c: int, floor: float, ceiling: float = CEILING) -> float:
    """The observed prediction score in [floor, ceiling] maximising class ``c``'s validation F1 (ties: the lowest);
    the floor when the class has no labels, no prediction in range or none reaches F1 > 0."""
    if not val.labels[c]:
        return floor
    ts = np.array(sorted({float(s) for s in val.scores[c] if floor <= s <= ceiling}))
    if not len(ts):
        return floor
    kept, tp = val.counts(c, ts)
    precision = np.where(kept > 0, tp / np.maximum(kept, 1), 0.0)
    recall = tp / val.labels[c]
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    i = int(np.argmax(f1))  # the first (lowest threshold) of equal maxima
    return max(floor4(float(ts[i])), floor) if f1[i] > 0 else floor


def floor4(x: float) -> float:
    """The largest 4-decimal value at most ``x``: a threshold the card stores exactly (YAML round-trips a
    float's repr), so a prediction scored ``x`` stays at or above it in the station (scores compare as float64)."""
    v = round(math.floor(x * 1e4) / 1e4, 4)
    if v > x:
        v = round(v - 1e-4, 4)
    elif round(v + 1e-4, 4) <= x:
        v = round(v + 1e-4, 4)
    return v


def step_above(score: float) -> float:
    """The smallest 4-decimal threshold strictly above ``score`` (so the detection scored ``score`` falls below it,
    in the card as here)."""
    return round(floor4(score) + 1e-4, 4)


def negative_fires(neg: NegativeScores, thresholds: np.ndarray) -> np.ndarray:
    """(N_images,) bool: the image has a detection at or above its class's threshold."""
    if neg.images == 0:
        return np.zeros(0, bool)
    return ((neg.best > 0) & (neg.best >= thresholds[None, :])).any(axis=1)


@dataclass(frozen=True, slots=True)
class ClassCalibration:
    name: str
    threshold: float
    start: float  # the F1-optimal threshold the greedy raise started from
    val_labels: int
    val_precision: float
    val_recall: float
    negative_share: float  # negative images with a detection of this class at or above its threshold

    def to_json(self) -> dict:
        return {"threshold": round(self.threshold, 4), "f1_start": round(self.start, 4),
                "val_labels": self.val_labels, "val_precision": round(self.val_precision, 4),
                "val_recall": round(self.val_recall, 4), "negative_share": round(self.negative_share, 4)}


@dataclass(frozen=True, slots=True)
class Calibration:
    floor: float
    target: float
    negative_images: int
    per_class: tuple[ClassCalibration, ...]
    negatives_at_floor: int  # images with any detection at the floor (one threshold for all, as before)
    negatives_at_start: int  # ... at the F1-optimal start
    negatives_after: int  # ... at the calibrated thresholds
    reached: bool  # the share after is at most the target
    steps: tuple[tuple[str, float, float], ...] = field(default=())  # greedy raises: (class, from, to)
    per_set: tuple[tuple[int, int], ...] = field(default=())  # per negative set: (images, images with detection)

    @property
    def thresholds(self) -> dict[str, float]:
        return {c.name: round(c.threshold, 4) for c in self.per_class}

    def share(self, n: int) -> float:
        return n / self.negative_images if self.negative_images else 0.0

    def to_json(self) -> dict:
        return {
            "floor": self.floor, "target": self.target, "reached": self.reached,
            "per_class": {c.name: c.to_json() for c in self.per_class},
            "negative_images": self.negative_images,
            "negative_images_with_detection": {
                "at_floor": {"images": self.negatives_at_floor, "share": round(self.share(self.negatives_at_floor), 4)},
                "at_f1_start": {"images": self.negatives_at_start,
                                "share": round(self.share(self.negatives_at_start), 4)},
                "calibrated": {"images": self.negatives_after, "share": round(self.share(self.negatives_after), 4)},
            },
            "greedy_steps": len(self.steps),
            "per_set": [{"images": n, "with_detection": k, "share": round(k / n, 4) if n else 0.0}
                        for n, k in self.per_set],
        }


def calibrate(val: ValidationScores, neg: NegativeScores, floor: float, target: float = DEFAULT_TARGET,
              ceiling: float = CEILING) -> Calibration:
    """Per-class thresholds: F1-optimal start, then greedy raises until at most ``target`` of the negative images
    have any detection at or above its class's threshold (module docstring)."""
    if val.classes != neg.classes:
        raise CalibrationError(f"validation classes {list(val.classes)} differ from negatives' {list(neg.classes)}")
    if not 0 <= target <= 1:
        raise CalibrationError(f"target {target} must be a share in [0, 1]")
    nc = len(val.classes)
    start = np.array([best_f1_threshold(val, c, floor, ceiling) for c in range(nc)], np.float64)
    t = start.copy()
    n_neg = neg.images
    groups = neg.groups()
    set_ids = np.unique(groups)
    set_sizes = {int(g): int((groups == g).sum()) for g in set_ids}
    steps: list[tuple[str, float, float]] = []
    recall_now = [val.recall(c, t[c]) for c in range(nc)]
    fires = negative_fires(neg, t)

    def over_target(fires: np.ndarray) -> np.ndarray:
        """(N_images,) bool: the image belongs to a set whose share of firing images exceeds the target."""
        bad = [g for g in set_ids if fires[groups == g].sum() / set_sizes[int(g)] > target + 1e-12]
        return np.isin(groups, bad)

    while n_neg and over_target(fires).any():
        # Only images of sets still above the target count as removed: silencing an image of a set that already
        # meets it buys nothing.
        counted = over_target(fires)
        best = None  # (cost per image, raise, class, new threshold, images removed)
        for c in range(nc):
            col = neg.best[:, c]
            firing = (col > 0) & (col >= t[c])
            if not firing.any():
                continue
            others = t.copy()
            others[c] = np.inf
            fires_other = negative_fires(neg, others)
            cand = np.array(sorted({step_above(s) for s in col[firing]}))
            cand = cand[cand <= ceiling + 1e-12]
            if not len(cand):
                continue
            still = fires_other[None, :] | (firing[None, :] & (col[None, :] >= cand[:, None]))
            removed = int((fires & counted).sum()) - (still & counted[None, :]).sum(axis=1)
            lost = np.maximum(recall_now[c] - val.recall_at(c, cand), 0.0)
            for k in np.flatnonzero(removed > 0):
                key = (round(float(lost[k] / removed[k]), 12), round(float(cand[k] - t[c]), 6), c)
                if best is None or key < best[0]:
                    best = (key, c, float(cand[k]))
        if best is None:
            break  # negatives scored above the ceiling: nothing left to raise
        _, c, new_t = best
        steps.append((val.classes[c], float(t[c]), float(new_t)))
        t[c] = new_t
        recall_now[c] = val.recall(c, new_t)
        fires = negative_fires(neg, t)
    per_class = []
    for c in range(nc):
        p, r = val.precision_recall(c, t[c])
        col = neg.best[:, c]
        share = float(((col > 0) & (col >= t[c])).sum() / n_neg) if n_neg else 0.0
        per_class.append(ClassCalibration(val.classes[c], float(t[c]), float(start[c]), val.labels[c], p, r, share))
    after = int(fires.sum())
    return Calibration(
        floor=floor, target=target, negative_images=n_neg, per_class=tuple(per_class),
        negatives_at_floor=int(negative_fires(neg, np.full(nc, floor)).sum()),
        negatives_at_start=int(negative_fires(neg, start).sum()), negatives_after=after,
        reached=not over_target(fires).any() if n_neg else True, steps=tuple(steps),
        per_set=tuple((set_sizes[int(g)], int(fires[groups == g].sum())) for g in set_ids))


# ------------------------------------------------------------------------------------------ card


def with_calibration(card: dict, cal: Calibration, negatives: Sequence[tuple[str, int]], validation: str,
                     split: str, validation_images: int, command: str, today: dt.date | None = None) -> dict:
    """``card`` with ``thresholds.per_class`` and ``thresholds.calibration`` set; ``confidence`` (the decode
    floor) and ``iou`` kept as they are. ``negatives``: (folder, images) per negative folder."""
    th = dict(card.get("thresholds") or {})
    th.setdefault("confidence", cal.floor)
    th["per_class"] = cal.thresholds
    figures = cal.to_json()
    # One entry per negative folder, in the order they were scored (collect_negatives numbers the sets so).
    fired = [k for _, k in cal.per_set] if len(cal.per_set) == len(negatives) else []
    th["calibration"] = {
        "method": "per class: F1-optimal on the validation set, then greedy raises (least validation recall lost "
                  "per negative image removed) until, in every negative folder, the share of images with any "
                  "detection is at most the target (models/thresholds.py)",
        "negatives": [{"folder": str(f), "images": int(n), **({"with_detection": fired[i]} if fired else {})}
                      for i, (f, n) in enumerate(negatives)],
        "validation": {"folder": str(validation), "split": split, "images": int(validation_images)},
        "target": cal.target,
        "reached": cal.reached,
        "per_class": figures["per_class"],
        "negative_images_with_detection": figures["negative_images_with_detection"],
        "date": (today or dt.date.today()).isoformat(),
        "command": command,
    }
    out = dict(card)
    out["thresholds"] = th
    return out


# ------------------------------------------------------------------------------------------ runner


def negative_files(folder: Path) -> list[Path]:
    """The image files (jpg/jpeg/png) directly in ``folder`` (not its subfolders), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"negatives folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in NEGATIVE_SUFFIXES)
    if not files:
        raise CalibrationError(f"no images (jpg, jpeg, png) in negatives folder {folder}")
    return files


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise CalibrationError(f"{path} is not a readable image")
    return image


def collect_negatives(detector, folders: Sequence[Path],
                      progress: Callable[[int, int], None] | None = None) -> tuple[NegativeScores, list[int]]:
    """Detections on every negative image; also the image count per folder."""
    lists = [negative_files(f) for f in folders]  # every folder checked before any inference
    total = sum(len(x) for x in lists)
    per_image: list[list[tuple[int, float]]] = []
    for files in lists:
        for path in files:
            (det,) = detector.detect([_read(path)])
            per_image.append([(int(c), float(s)) for c, s in zip(det.class_id, det.score)])
            if progress:
                progress(len(per_image), total)
    group = [i for i, files in enumerate(lists) for _ in files]
    return NegativeScores.from_detections(detector.class_names, per_image, group), [len(x) for x in lists]


def collect_validation(detector, dataset: Path, split: str = "test",
                       progress: Callable[[int, int], None] | None = None) -> ValidationScores:
    """Predictions at the detector's floor on ``dataset/images/<split>``, matched per class at IoU 0.5."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise CalibrationError(f"validation folder {dataset} not found")
    files = list_split(dataset, split)
    nc = len(detector.class_names)
    pcls, scores, tps, tcls_all = [], [], [], []
    for i, path in enumerate(files):
        try:
            image = _read(path)
        except CalibrationError as exc:
            raise DatasetError(str(exc)) from None
        h, w = image.shape[:2]
        label_path = dataset / "labels" / split / f"{path.stem}.txt"
        tboxes, tcls = read_labels(label_path, w, h)
        if len(tcls) and tcls.max() >= nc:
            raise DatasetError(f"{label_path}: class {int(tcls.max())} but the model has {nc} classes")
        (det,) = detector.detect([image])
        correct = match_predictions(det.class_id, tcls, box_iou(det.xyxy, tboxes))
        pcls.append(det.class_id.astype(np.int64))
        scores.append(det.score.astype(np.float64))
        tps.append(correct[:, MATCH_IOU_COLUMN])
        tcls_all.append(tcls)
        if progress:
            progress(i + 1, len(files))
    cat = (lambda xs, dtype: np.concatenate(xs) if xs else np.zeros(0, dtype))
    return ValidationScores.from_arrays(detector.class_names, cat(pcls, np.int64), cat(scores, np.float64),
                                        cat(tps, bool), cat(tcls_all, np.int64), len(files))
