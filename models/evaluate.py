"""Detector evaluation on a YOLO-format dataset with our own ONNX engine (the runtime path).

mAP follows the usual definition (and ultralytics' implementation): predictions at a low confidence,
greedy matching per class at IoU 0.50:0.95, AP as the area under the monotone precision envelope sampled at
101 recall points. Per-class precision/recall and the confusion matrix are taken at the model's operating
confidence, so they describe what the station actually sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.onnx_yolo import OnnxYoloDetector

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


class DatasetError(ValueError):
    """The dataset folder is not a YOLO-format dataset the evaluator can read."""


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, 101-point interpolation (COCO)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


def match_predictions(pred_cls: np.ndarray, true_cls: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """(N_pred, 10) bool: prediction i is a true positive at IoU threshold j.

    Greedy by IoU, each label and each prediction used once, same class only (ultralytics' rule, so the
    numbers compare with its validator). ``iou`` is (N_pred, N_true).
    """
    correct = np.zeros((len(pred_cls), len(IOU_THRESHOLDS)), bool)
    if len(pred_cls) == 0 or len(true_cls) == 0:
        return correct
    iou_tp = iou.T * (true_cls[:, None] == pred_cls[None, :])  # (N_true, N_pred)
    for j, thr in enumerate(IOU_THRESHOLDS):
        matches = np.argwhere(iou_tp >= thr)
        if len(matches) > 1:
            matches = matches[iou_tp[matches[:, 0], matches[:, 1]].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        if len(matches):
            correct[matches[:, 1], j] = True
    return correct


def read_labels(path: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    boxes, classes = [], []
    if path.exists():
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise DatasetError(f"{path}:{line_no}: expected 'class cx cy w h', got {line!r}")
            c, cx, cy, w, h = int(parts[0]), *map(float, parts[1:])
            boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
            classes.append(c)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


@dataclass(slots=True)
class EvalReport:
    classes: tuple[str, ...]
    images: int
    instances: list[int]
    map50: float
    map50_95: float
    ap50: list[float]
    ap50_95: list[float]
    precision: list[float]
    recall: list[float]
    confusion: list[list[int]]  # (nc + 1) x (nc + 1): rows predicted, columns true; last = background
    worst: list[dict] = field(default_factory=list)
    pr_curves: list[tuple[list[float], list[float]]] = field(default_factory=list)
    operating_confidence: float = 0.25

    def to_json(self) -> dict:
        return {
            "images": self.images,
            "mAP50": round(self.map50, 4),
            "mAP50_95": round(self.map50_95, 4),
            "operating_confidence": self.operating_confidence,
            "per_class": [
                {"class": c, "instances": n, "AP50": round(a, 4), "AP50_95": round(b, 4),
                 "precision": round(p, 4), "recall": round(r, 4)}
                for c, n, a, b, p, r in zip(self.classes, self.instances, self.ap50, self.ap50_95,
                                            self.precision, self.recall)
            ],
            "confusion_matrix": {"labels": [*self.classes, "background"], "rows": "predicted",
                                 "columns": "true", "counts": self.confusion},
            "worst_images": self.worst,
        }


def list_split(dataset: Path, split: str) -> list[Path]:
    dataset = Path(dataset)
    img_dir = dataset / "images" / split
    if not img_dir.is_dir():
        raise DatasetError(f"{img_dir} not found: DATASET must be a YOLO folder with images/{split}/ and labels/{split}/")
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if not files:
        raise DatasetError(f"no images in {img_dir}")
    return files


def evaluate(detector: OnnxYoloDetector, dataset: Path, split: str = "test", operating_conf: float | None = None,
             worst_n: int = 10, progress=None) -> EvalReport:
    """Evaluate on ``dataset/images/<split>`` with labels in ``dataset/labels/<split>``."""
    files = list_split(dataset, split)
    nc = len(detector.class_names)
    op_conf = operating_conf if operating_conf is not None else detector.confidence
    # Low threshold for the PR curves, as is standard for mAP.
    saved = detector.confidence, detector.iou
    detector.confidence, detector.iou = 0.001, 0.7
    stats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    confusion = np.zeros((nc + 1, nc + 1), np.int64)
    per_image = []
    try:
        for i, path in enumerate(files):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise DatasetError(f"{path} is not a readable image")
            h, w = image.shape[:2]
            label_path = Path(dataset) / "labels" / split / f"{path.stem}.txt"
            tboxes, tcls = read_labels(label_path, w, h)
            if len(tcls) and tcls.max() >= nc:
                raise DatasetError(f"{label_path}: class {int(tcls.max())} but the model has {nc} classes")
            (det,) = detector.detect([image])
            iou = box_iou(det.xyxy, tboxes)
            correct = match_predictions(det.class_id, tcls, iou)
            stats.append((correct, det.score, det.class_id, tcls))
            # Operating point: confusion matrix and per-image errors.
            keep = det.score >= op_conf
            pb, pc = det.xyxy[keep], det.class_id[keep]
            iou_op = box_iou(pb, tboxes)
            matched_t, matched_p = set(), set()
            if iou_op.size:
                pairs = np.argwhere(iou_op >= 0.45)
                pairs = pairs[np.argsort(-iou_op[pairs[:, 0], pairs[:, 1]])]
                for p, t in pairs:
                    if p in matched_p or t in matched_t:
                        continue
                    matched_p.add(int(p))
                    matched_t.add(int(t))
                    confusion[pc[p], tcls[t]] += 1
            for p in range(len(pc)):
                if p not in matched_p:
                    confusion[pc[p], nc] += 1
            for t in range(len(tcls)):
                if t not in matched_t:
                    confusion[nc, tcls[t]] += 1
            fp = len(pc) - len(matched_p)
            fn = len(tcls) - len(matched_t)
            per_image.append({"image": str(path), "false_positives": fp, "missed": fn, "labels": int(len(tcls))})
            if progress:
                progress(i + 1, len(files))
    finally:
        detector.confidence, detector.iou = saved

    correct = np.concatenate([s[0] for s in stats]) if stats else np.zeros((0, 10), bool)
    scores = np.concatenate([s[1] for s in stats]) if stats else np.zeros(0)
    pcls = np.concatenate([s[2] for s in stats]) if stats else np.zeros(0, np.int64)
    tcls_all = np.concatenate([s[3] for s in stats]) if stats else np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    correct, scores, pcls = correct[order], scores[order], pcls[order]
    ap = np.zeros((nc, 10))
    precision_op, recall_op, instances, curves = [], [], [], []
    for c in range(nc):
        sel = pcls == c
        n_true = int((tcls_all == c).sum())
        instances.append(n_true)
        if n_true == 0 or not sel.any():
            precision_op.append(0.0)
            recall_op.append(0.0)
            curves.append(([0.0, 1.0], [0.0, 0.0]))
            continue
        tp = np.cumsum(correct[sel], axis=0)
        fp = np.cumsum(~correct[sel], axis=0)
        recall = tp / n_true
        precision = tp / np.maximum(tp + fp, 1)
        for j in range(10):
            ap[c, j] = average_precision(recall[:, j], precision[:, j])
        at_op = scores[sel] >= op_conf
        k = int(at_op.sum())
        precision_op.append(float(precision[k - 1, 0]) if k else 0.0)
        recall_op.append(float(recall[k - 1, 0]) if k else 0.0)
        curves.append((recall[:, 0].tolist(), precision[:, 0].tolist()))
    present = [c for c in range(nc) if instances[c] > 0]
    worst = sorted(per_image, key=lambda r: (-(r["false_positives"] + r["missed"]), r["image"]))[:worst_n]
    return EvalReport(
        classes=detector.class_names, images=len(files), instances=instances,
        map50=float(ap[present, 0].mean()) if present else 0.0,
        map50_95=float(ap[present].mean()) if present else 0.0,
        ap50=ap[:, 0].tolist(), ap50_95=ap.mean(axis=1).tolist(),
        precision=precision_op, recall=recall_op, confusion=confusion.tolist(), worst=worst,
        pr_curves=curves, operating_confidence=op_conf,
    )


# ------------------------------------------------------------------------------------------- plots

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
            (23, 204, 146), (134, 219, 61), (211, 188, 0), (209, 99, 106)]


def plot_pr_curves(report: EvalReport, path: Path, size: int = 640) -> None:
    """PR curve per class at IoU 0.5 (OpenCV drawing: no plotting library at run time)."""
    m, w = 60, size
    img = np.full((w, w + 220, 3), 255, np.uint8)
    x0, y0, x1, y1 = m, m // 2, w - m // 2, w - m
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    for t in np.linspace(0, 1, 6):
        x = int(x0 + t * (x1 - x0))
        y = int(y1 - t * (y1 - y0))
        cv2.putText(img, f"{t:.1f}", (x - 10, y1 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{t:.1f}", (x0 - 32, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "recall", ((x0 + x1) // 2 - 20, y1 + 40), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "precision", (4, y0 - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    for c, (rec, prec) in enumerate(report.pr_curves):
        colour = _PALETTE[c % len(_PALETTE)]
        pts = np.array([[x0 + r * (x1 - x0), y1 - p * (y1 - y0)] for r, p in zip(rec, prec)], np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, f"{report.classes[c]} {report.ap50[c]:.2f}", (w + 5, 30 + 22 * c),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    cv2.putText(img, f"all: mAP50 {report.map50:.3f}", (w + 5, 30 + 22 * len(report.pr_curves) + 10),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def plot_confusion(report: EvalReport, path: Path, cell: int = 48) -> None:
    labels = [*report.classes, "background"]
    n = len(labels)
    cm = np.array(report.confusion, np.float64)
    col_sum = np.maximum(cm.sum(axis=0, keepdims=True), 1)
    norm = cm / col_sum  # each true class sums to 1
    m = 130
    img = np.full((m + n * cell + 20, m + n * cell + 20, 3), 255, np.uint8)
    for r in range(n):
        for c in range(n):
            v = norm[r, c]
            shade = int(255 - 200 * v)
            x, y = m + c * cell, m + r * cell
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            if cm[r, c]:
                cv2.putText(img, f"{int(cm[r, c])}", (x + 6, y + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                            (0, 0, 0), 1, cv2.LINE_AA)
    for i, name in enumerate(labels):
        cv2.putText(img, name[:14], (4, m + i * cell + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        # Column labels, written vertically by rotating a small strip.
        strip = np.full((cell, m - 10, 3), 255, np.uint8)
        cv2.putText(strip, name[:14], (2, cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        rot = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
        img[5:5 + rot.shape[0], m + i * cell:m + i * cell + rot.shape[1]] = rot
    cv2.putText(img, "rows: predicted, columns: true", (m, m + n * cell + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def write_report(report: EvalReport, out_dir: Path) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "eval.json", "pr_curves": out_dir / "pr_curves.png",
             "confusion_matrix": out_dir / "confusion_matrix.png"}
    files["json"].write_text(json.dumps(report.to_json(), indent=2))
    plot_pr_curves(report, files["pr_curves"])
    plot_confusion(report, files["confusion_matrix"])
    return {k: str(v) for k, v in files.items()}
