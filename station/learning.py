"""Learning from the line: a YOLO-format dataset from stored inspections.

Labels per view of each inspected item (an original record and the overrides that point at it):
- the latest box-correction override (``decision_json["boxes"]``, written by ``StationStore.override_boxes``)
  is the complete truth for every view of the item: its boxes, and no box means a clean view;
- otherwise the detector's own boxes are taken as confirmed when every one of them scores at least
  ``min_confidence``; a view with a weaker box is left out (nobody checked it);
- views that end up without boxes are written with empty label files: hard negatives. By default only views a
  supervisor checked (a correction with no box on that view: a clean item, or a false alarm deleted); views
  nobody checked where the detector found nothing only with ``unreviewed_negatives`` (a weak model's misses
  would otherwise be taught as clean).
Splits are by item (unit code, else order id), so all views of one item land in the same split. Images are
passed through the privacy redaction that sync uses (faces, address labels) before they are written.
The manifest lists every file with its sha256 and where it came from; its ``sha256`` covers them all.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2

from station.domain import DETECTOR_CLASSES
from station.records import StationStore
from station.sync import redact

SPLITS = ("train", "val", "test")


class ExportError(ValueError):
    """Nothing (or nothing usable) to export; the message says why."""


@dataclass(frozen=True, slots=True)
class ExportSpec:
    min_confidence: float = 0.5
    val_share: float = 0.2
    test_share: float = 0.0
    since: str | None = None  # ISO time: only items inspected at or after it
    corrected_only: bool = False  # only items a supervisor corrected (the gate's "recent overrides")
    negatives: bool = True  # views a supervisor left without boxes in a correction (checked clean)
    unreviewed_negatives: bool = False  # also views nobody checked and the detector found nothing on
    blur_faces: bool = True
    blur_labels: bool = True


@dataclass(frozen=True, slots=True)
class _View:
    record_id: str
    view: str
    sha256: str
    boxes: tuple[tuple[int, tuple[float, float, float, float]], ...]
    source: str  # "override" or "detector"
    group: str


def _root(rows_by_id: dict[str, dict], record_id: str) -> str:
    seen = set()
    while rows_by_id[record_id]["overrides"] and record_id not in seen:
        seen.add(record_id)
        parent = rows_by_id[record_id]["overrides"]
        if parent not in rows_by_id:
            break
        record_id = parent
    return record_id


def collect_views(store: StationStore, spec: ExportSpec) -> tuple[list[_View], dict[str, int]]:
    rows = list(store.rows())
    by_id = {r["record_id"]: r for r in rows}
    corrections: dict[str, list] = {}  # root record -> latest corrected boxes
    for r in rows:  # in seq order: later corrections win
        if r["overrides"]:
            decision = json.loads(r["decision_json"])
            if "boxes" in decision:
                corrections[_root(by_id, r["record_id"])] = decision["boxes"]
    skipped = {"uncertain_views": 0, "unknown_class_boxes": 0, "missing_images": 0}
    views: list[_View] = []
    for r in rows:
        if r["overrides"] or (spec.since and r["created_at"] < spec.since):
            continue
        corrected = r["record_id"] in corrections
        if spec.corrected_only and not corrected:
            continue
        if corrected:
            boxes_json, source = corrections[r["record_id"]], "override"
            boxes = [(b["view"], b["class"], b["box_xyxy"], 1.0) for b in boxes_json]
        else:
            source = "detector"
            boxes = [(f.get("view"), f["kind"], f["box_xyxy"], float(f["score"]))
                     for f in json.loads(r["findings_json"]) if f.get("source") == "detector" and "box_xyxy" in f]
        group = r["unit_code"] or r["order_id"]
        for img in r["images"]:
            mine = [b for b in boxes if b[0] == img["view"]]
            if source == "detector" and any(score < spec.min_confidence for *_, score in mine):
                skipped["uncertain_views"] += 1
                continue
            labelled = []
            for _, cls, xyxy, _ in mine:
                if cls not in DETECTOR_CLASSES:
                    skipped["unknown_class_boxes"] += 1
                    continue
                labelled.append((DETECTOR_CLASSES.index(cls), tuple(float(v) for v in xyxy)))
            if not labelled and not (spec.negatives if source == "override" else spec.unreviewed_negatives):
                continue
            views.append(_View(r["record_id"], img["view"], img["sha256"], tuple(labelled), source, group))
    return views, skipped


def assign_splits(groups: list[str], val_share: float, test_share: float) -> dict[str, str]:
    """Deterministic split per item group (by hash order); val and test get at least one group when asked for
    and there are groups left for train."""
    order = sorted(set(groups), key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    n = len(order)
    n_val = max(1, round(n * val_share)) if val_share > 0 and n >= 2 else 0
    n_test = max(1, round(n * test_share)) if test_share > 0 and n - n_val >= 2 else 0
    out = {}
    for i, g in enumerate(order):
        out[g] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


def export_dataset(store: StationStore, out: Path, spec: ExportSpec = ExportSpec(), progress=None) -> dict:
    """Write ``out`` (images/<split>, labels/<split>, data.yaml, manifest.json); return the manifest."""
    out = Path(out)
    if spec.blur_faces and not hasattr(cv2, "CascadeClassifier"):
        raise ExportError(f"face blurring needs OpenCV's CascadeClassifier, which OpenCV {cv2.__version__} does not "
                          f"have: export with --no-blur-faces (address labels are still blurred)")
    views, skipped = collect_views(store, spec)
    if not views:
        raise ExportError("no inspections to export" + (f" since {spec.since}" if spec.since else "")
                          + (" with box corrections" if spec.corrected_only else ""))
    splits = assign_splits([v.group for v in views], spec.val_share, spec.test_share)
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    files, digest = [], hashlib.sha256()
    counts = {s: {"images": 0, "negatives": 0, "boxes": dict.fromkeys(DETECTOR_CLASSES, 0)} for s in SPLITS}
    redacted = 0
    for i, v in enumerate(views):
        try:
            src = store.image_path(v.sha256)
            image = cv2.imread(str(src), cv2.IMREAD_COLOR)
        except Exception:  # pruned by retention or missing on disk
            image = None
        if image is None:
            skipped["missing_images"] += 1
            continue
        clean = redact(image, spec.blur_faces, spec.blur_labels)
        redacted += int(clean is not image and not (clean == image).all())
        h, w = image.shape[:2]
        split = splits[v.group]
        # Named by content, not by the (random) record id: the same records export to the same file names, so
        # the trainer sees them in the same order and a fine-tune on them is reproducible.
        group = hashlib.sha256(v.group.encode()).hexdigest()[:10]
        stem = f"{group}_{''.join(ch if ch.isalnum() else '-' for ch in v.view)}_{v.sha256[:10]}"
        ok, buf = cv2.imencode(".png", clean, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ExportError(f"could not encode image {v.sha256}")
        data = buf.tobytes()
        lines = []
        for cls, (x1, y1, x2, y2) in v.boxes:
            x1, x2 = max(0.0, min(x1, w)), max(0.0, min(x2, w))
            y1, y2 = max(0.0, min(y1, h)), max(0.0, min(y2, h))
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            lines.append(f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                         f"{(y2 - y1) / h:.6f}")
            counts[split]["boxes"][DETECTOR_CLASSES[cls]] += 1
        text = "\n".join(lines) + ("\n" if lines else "")
        (out / "images" / split / f"{stem}.png").write_bytes(data)
        (out / "labels" / split / f"{stem}.txt").write_text(text)
        img_sha, lbl_sha = hashlib.sha256(data).hexdigest(), hashlib.sha256(text.encode()).hexdigest()
        digest.update(img_sha.encode() + lbl_sha.encode())
        counts[split]["images"] += 1
        counts[split]["negatives"] += int(not lines)
        files.append({"image": f"images/{split}/{stem}.png", "image_sha256": img_sha,
                      "label": f"labels/{split}/{stem}.txt", "label_sha256": lbl_sha, "split": split,
                      "record_id": v.record_id, "view": v.view, "source_image_sha256": v.sha256,
                      "labels_from": v.source, "boxes": len(lines)})
        if progress:
            progress(i + 1, len(views))
    if not files:
        raise ExportError("every image of the selected inspections is missing (pruned?): nothing exported")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(DETECTOR_CLASSES))
    (out / "data.yaml").write_text(
        f"path: {out.resolve()}\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n{names}\n")
    manifest = {
        "generator": "station.learning.export_dataset",
        "spec": {k: getattr(spec, k) for k in ExportSpec.__dataclass_fields__},
        "splits": counts,
        "items": len(set(v.group for v in views)),
        "skipped": skipped,
        "privacy": {"blur_faces": spec.blur_faces, "blur_labels": spec.blur_labels, "images_changed": redacted},
        "files": files,
        "sha256": digest.hexdigest(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


# ------------------------------------------------------------------------------------------- boot


def registry_detector(cfg):
    """The detector for boot when the model registry has an active version for this station (None: use
    ``detector.model``), wrapped in a ShadowDetector when ``models.shadow`` names a registered candidate.
    A registry that was never created is not created here."""
    from models.registry import ModelRegistry, RegistryError, load_registered
    from models.onnx_yolo import ModelError, OnnxYoloDetector

    det = cfg.detector
    registry = ModelRegistry(cfg.station.data_dir)
    if not registry.db_path.exists():
        if cfg.models.shadow:
            raise ModelError(f"models.shadow = {cfg.models.shadow!r} but there is no model registry in "
                             f"{registry.root}: `station model register FILE` first")
        return None
    with registry:
        try:
            entry = registry.active(cfg.station.id) if cfg.models.registry else None
            active = (load_registered(entry, det.confidence, det.iou, det.threads, det.input_size) if entry is not None
                      else None)
            if not cfg.models.shadow:
                return active
            candidate = load_registered(registry.require(cfg.models.shadow), det.confidence, det.iou, det.threads,
                                        det.input_size)
        except RegistryError as exc:
            raise ModelError(f"model registry: {exc}") from None
    from models.shadow import ShadowDetector, ShadowLog

    if active is None:
        active = OnnxYoloDetector(det.model, det.confidence, det.iou, det.threads, det.input_size).load()
    log = ShadowLog(registry.root / "shadow.db")
    return ShadowDetector(active, candidate, log.record, on_error=logging.getLogger(__name__).warning)
