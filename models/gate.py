"""Promotion gate: a candidate model replaces the active one only if no class's recall drops beyond a tolerance
and it is not slower beyond a ratio, on a frozen golden set plus recent supervisor corrections.

``decide`` is a pure function of two evaluation reports and two latencies; ``compare_models`` runs the
evaluations (models/evaluate.py, our ONNX engine) and times both models on the same images.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from models.evaluate import EvalReport, evaluate, list_split, write_report
from models.onnx_yolo import OnnxYoloDetector


@dataclass(frozen=True, slots=True)
class GatePolicy:
    recall_tolerance: float = 0.05  # largest allowed drop of any class's recall (absolute)
    max_latency_ratio: float = 1.5  # candidate latency / active latency
    min_instances: int = 3  # classes with fewer labels in the evaluation set are reported, not gated


@dataclass(frozen=True, slots=True)
class ClassCheck:
    name: str
    instances: int
    active_recall: float
    new_recall: float
    gated: bool
    ok: bool

    def to_json(self) -> dict:
        return {"class": self.name, "instances": self.instances, "active_recall": round(self.active_recall, 4),
                "new_recall": round(self.new_recall, 4), "delta": round(self.new_recall - self.active_recall, 4),
                "gated": self.gated, "ok": self.ok}


@dataclass(frozen=True, slots=True)
class GateResult:
    passed: bool
    reasons: tuple[str, ...]
    classes: tuple[ClassCheck, ...]
    active_latency_ms: float
    new_latency_ms: float
    policy: GatePolicy
    active_map50: float = 0.0
    new_map50: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def latency_ratio(self) -> float:
        return self.new_latency_ms / max(self.active_latency_ms, 1e-9)

    def to_json(self) -> dict:
        return {
            "decision": "promote" if self.passed else "refuse",
            "passed": self.passed,
            "reasons": list(self.reasons),
            "per_class": [c.to_json() for c in self.classes],
            "latency_ms": {"active": round(self.active_latency_ms, 2), "new": round(self.new_latency_ms, 2),
                           "ratio": round(self.latency_ratio, 3)},
            "mAP50": {"active": round(self.active_map50, 4), "new": round(self.new_map50, 4)},
            "policy": {"recall_tolerance": self.policy.recall_tolerance,
                       "max_latency_ratio": self.policy.max_latency_ratio,
                       "min_instances": self.policy.min_instances},
            **self.extra,
        }


def decide(active: EvalReport, new: EvalReport, active_latency_ms: float, new_latency_ms: float,
           policy: GatePolicy) -> GateResult:
    """The gate's verdict: every reason it refuses, or none."""
    if tuple(active.classes) != tuple(new.classes):
        return GateResult(False, (f"class lists differ: active {list(active.classes)}, new {list(new.classes)}",),
                          (), active_latency_ms, new_latency_ms, policy, active.map50, new.map50)
    reasons, checks = [], []
    for i, name in enumerate(new.classes):
        n = active.instances[i]
        gated = n >= policy.min_instances
        drop = active.recall[i] - new.recall[i]
        ok = not gated or drop <= policy.recall_tolerance + 1e-9
        checks.append(ClassCheck(name, n, active.recall[i], new.recall[i], gated, ok))
        if not ok:
            reasons.append(f"recall of {name} drops {active.recall[i]:.3f} -> {new.recall[i]:.3f} "
                           f"(more than the tolerance {policy.recall_tolerance:g}, {n} labels)")
    if not any(c.gated for c in checks):
        reasons.append(f"no class has {policy.min_instances}+ labels in the evaluation set: nothing to judge "
                       f"the candidate on (use a larger golden set)")
    ratio = new_latency_ms / max(active_latency_ms, 1e-9)
    if ratio > policy.max_latency_ratio:
        reasons.append(f"latency grows {active_latency_ms:.1f} -> {new_latency_ms:.1f} ms per image "
                       f"(x{ratio:.2f}, more than x{policy.max_latency_ratio:g})")
    return GateResult(not reasons, tuple(reasons), tuple(checks), active_latency_ms, new_latency_ms, policy,
                      active.map50, new.map50)


def measure_latency(detector: OnnxYoloDetector, images: list, repeats: int = 3) -> float:
    """Median milliseconds of one single-image ``detect`` call over ``images`` x ``repeats`` (after a warm-up)."""
    detector.detect([images[0]])
    times = []
    for _ in range(repeats):
        for image in images:
            t = time.perf_counter()
            detector.detect([image])
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def merge_datasets(parts: list[tuple[Path, str]], out: Path) -> dict[str, int]:
    """One evaluation set ``out/images/test`` from (dataset, split) parts, by hard links (copies across disks)."""
    counts: dict[str, int] = {}
    img_dir, lbl_dir = out / "images" / "test", out / "labels" / "test"
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    for k, (dataset, split) in enumerate(parts):
        files = list_split(dataset, split)
        for f in files:
            stem = f"p{k}_{f.stem}"
            _link(f, img_dir / f"{stem}{f.suffix}")
            label = Path(dataset) / "labels" / split / f"{f.stem}.txt"
            (lbl_dir / f"{stem}.txt").write_text(label.read_text() if label.exists() else "")
        counts[f"{dataset}:{split}"] = len(files)
    return counts


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        dst.write_bytes(Path(src).read_bytes())


def compare_models(active: OnnxYoloDetector, new: OnnxYoloDetector, dataset: Path, policy: GatePolicy,
                   out_dir: Path | None = None, latency_images: int = 8) -> tuple[GateResult, EvalReport, EvalReport]:
    """Evaluate both models on ``dataset/images/test`` and time them on its first images; plots under out_dir."""
    rep_active = evaluate(active, dataset, "test")
    rep_new = evaluate(new, dataset, "test")
    files = list_split(dataset, "test")[:latency_images]
    images = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    # Interleave so a busy machine slows both alike.
    lat_a, lat_n = [], []
    for _ in range(2):
        lat_a.append(measure_latency(active, images, repeats=1))
        lat_n.append(measure_latency(new, images, repeats=1))
    result = decide(rep_active, rep_new, min(lat_a), min(lat_n), policy)
    if out_dir is not None:
        written = {"active": write_report(rep_active, Path(out_dir) / "active"),
                   "new": write_report(rep_new, Path(out_dir) / "new")}
        result = GateResult(result.passed, result.reasons, result.classes, result.active_latency_ms,
                            result.new_latency_ms, result.policy, result.active_map50, result.new_map50,
                            {"files": written})
    return result, rep_active, rep_new
