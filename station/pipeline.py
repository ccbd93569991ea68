"""The inspection pipeline: request -> frames -> quality gate -> detector -> catalogue comparer -> rules
-> record -> route. Each stage sits behind a small interface; the pipeline only wires them and times them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import numpy as np

from models.onnx_yolo import Detector
from station.domain import (UNCERTAIN_DEFECT, Decision, Detections, Disposition, Finding, FindingSource, Frame, Grade,
                            InspectionRecord, ReturnRequest)
from station.records import StationStore, comparison_measurements, record_from_parts
from station.rules import RulesEngine
from vision.catalogue import Catalogue
from vision.compare import Comparer, Comparison
from vision.quality import QualityGate, QualityVerdict

log = logging.getLogger(__name__)

STAGES = ("quality", "detect", "compare", "history", "rules", "record", "route")


class Router(Protocol):
    def lane_for(self, decision: Decision) -> int: ...

    def send(self, item_seq: int, lane: int) -> None: ...


class LaneRouter:
    """Maps a disposition to a lane (from config) and tells the conveyor or the bench."""

    def __init__(self, lanes: dict[Disposition, int], conveyor) -> None:
        self.lanes = lanes
        self.conveyor = conveyor

    def lane_for(self, decision: Decision) -> int:
        return self.lanes.get(decision.disposition, self.lanes.get(Disposition.MANUAL_REVIEW, 0))

    def send(self, item_seq: int, lane: int) -> None:
        self.conveyor.divert(item_seq, lane)


@dataclass(frozen=True, slots=True)
class InspectionResult:
    record: InspectionRecord
    detections: dict[str, Detections]
    quality: dict[str, QualityVerdict]
    comparison: Comparison
    findings: tuple[Finding, ...]  # what the rules used
    dropped: tuple[tuple[Finding, str], ...]  # what the rules set aside, and why
    unit_seen_before: bool

    def to_json(self) -> dict:
        d = self.record.decision
        return {
            "record_id": self.record.record_id,
            "order_id": self.record.request.order_id,
            "sku": self.record.request.sku,
            "detections": [
                {"class": name, "score": round(float(s), 4), "box_xyxy": [round(float(v), 1) for v in box], "view": view}
                for view, det in self.detections.items()
                for name, s, box in zip(det.names(), det.score, det.xyxy)
            ],
            "findings": [f.to_json() for f in self.findings],
            "dropped_findings": [{**f.to_json(), "why": why} for f, why in self.dropped],
            **d.to_json(),  # grade, disposition, liability, review, rules_fired, reasons, confidence
            "lane": self.record.lane,
            "unit_seen_before": self.unit_seen_before,
            "quality": {v: q.to_json() for v, q in self.quality.items()},
            "identity_score": round(self.comparison.identity_score, 4),
            "delta_e00": None if self.comparison.delta_e00 is None else round(self.comparison.delta_e00, 3),
            # The stream's presentation against the catalogue, when the return carried one (else null).
            "presentation": self.comparison.details.get("presentation"),
            "anomaly": self.comparison.details.get("anomaly"),
            "model_version": self.record.model_version,
            "timings_ms": self.record.timings_ms,
        }


def detections_to_findings(view: str, det: Detections,
                           thresholds: Mapping[str, float] | None = None) -> list[Finding]:
    """One finding per box. ``thresholds``: the detector's calibrated per-class thresholds (model card
    ``thresholds.per_class``, ``OnnxYoloDetector.class_thresholds``). A box at or above its class's threshold, or
    of a class without one, is a finding of its class; one below it is an ``uncertain_defect`` (same box and
    score; the detail names the class): evidence for a supervisor, not a named defect. None or empty: every box
    is confirmed (a model without calibrated thresholds, as before)."""
    out = []
    for name, s, box in zip(det.names(), det.score, det.xyxy):
        score, xyxy = float(s), tuple(float(v) for v in box)
        t = thresholds.get(name) if thresholds else None
        if t is not None and score < t:
            out.append(Finding(UNCERTAIN_DEFECT, score, FindingSource.DETECTOR, view, xyxy,
                               detail=f"{name} {score:.2f} below its calibrated {t:.2f}"))
        else:
            out.append(Finding(name, score, FindingSource.DETECTOR, view, xyxy))
    return out


def _overlap(a: tuple, b: tuple, margin: int = 8) -> bool:
    return a[0] - margin < b[2] and b[0] - margin < a[2] and a[1] - margin < b[3] and b[1] - margin < a[3]


def explained_damage_removed(catalogue: Sequence[Finding], detected: Sequence[Finding]) -> list[Finding]:
    """Catalogue findings without the ``damage`` regions a detector finding of the same view already covers:
    the detector names what it is (a scratch, a crack), and the unseen-damage rule is for what nothing named.
    Only confirmed detector findings count: an ``uncertain_defect`` (below its class's calibrated threshold)
    names nothing, so the damage region stays."""
    named = [(f.view, f.box_xyxy) for f in detected
             if f.source == FindingSource.DETECTOR and f.kind != UNCERTAIN_DEFECT and f.box_xyxy is not None]
    return [f for f in catalogue
            if not (f.kind == "damage" and f.box_xyxy is not None
                    and any(v == f.view and _overlap(f.box_xyxy, box) for v, box in named))]


class InspectionPipeline:
    def __init__(self, catalogue: Catalogue, quality_gate: QualityGate, detector: Detector, comparer: Comparer,
                 rules: RulesEngine, store: StationStore, router: Router, station_id: str) -> None:
        self.catalogue = catalogue
        self.quality_gate = quality_gate
        self.detector = detector
        self.comparer = comparer
        self.rules = rules
        self.store = store
        self.router = router
        self.station_id = station_id
        self._seq = 0

    def _learn_if_good(self, sku: str, record, comparison: Comparison, kept: tuple[Finding, ...]) -> None:
        """A return restocked as new with no finding at all and no review joins its SKU's memory of good
        appearance. Anything a rule or a person questioned stays out: a missed defect learnt as good would
        hide the next one."""
        learn = getattr(self.comparer, "learn_good", None)
        d = record.decision
        if learn is None or kept or d.review or d.grade != Grade.A or d.disposition != Disposition.RESTOCK:
            return
        try:
            learn(sku, comparison, record.record_id)
        except (OSError, ValueError) as exc:  # the decision stands; the memory just does not grow this time
            log.warning("good appearance of %s not updated: %s", sku, exc)

    def inspect(self, request: ReturnRequest, frames: Sequence[Frame], operator: str | None = None,
                item_seq: int | None = None, presentation: np.ndarray | None = None) -> InspectionResult:
        """``presentation``: the streamer's presentation image (BGR), when the return carries one; the comparer
        measures its product colour against the catalogue (a ``presentation_mismatch`` beyond the category's
        colour tolerance)."""
        if not frames:
            raise ValueError("no frames to inspect: capture at least one view")
        item = self.catalogue.get(request.sku)  # unknown SKU fails before anything is written
        timings: dict[str, float] = {}
        t = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timings[stage] = round((now - t) * 1000, 2)
            t = now

        quality = {f.view: self.quality_gate.check(f.image) for f in frames}
        lap("quality")
        dets = self.detector.detect([f.image for f in frames])
        detections = {f.view: d for f, d in zip(frames, dets)}
        # Calibrated per-class thresholds (model card); detectors without them (fakes) confirm every box.
        thresholds = getattr(self.detector, "class_thresholds", None)
        findings = [x for f, d in zip(frames, dets) for x in detections_to_findings(f.view, d, thresholds)]
        lap("detect")
        comparison = self.comparer.compare(item, frames, presentation=presentation,
                                           colour_tolerance=self.rules.colour_tolerance(item.category))
        findings += explained_damage_removed(comparison.findings, findings)
        lap("compare")
        seen = self.store.unit_seen_before(request.unit_code, excluding_order=request.order_id)
        if seen:
            findings.append(Finding("unit_seen_before", 1.0, FindingSource.HISTORY,
                                    detail=f"unit code {request.unit_code} is in an earlier return"))
        lap("history")
        norm = self.rules.normalise(findings, item)
        decision = self.rules.decide_normalised(request, item, norm, unit_seen_before=seen)
        poor = [f"{v} ({'; '.join(q.problems)})" for v, q in quality.items() if not q.ok]
        if poor:
            # A decision on a bad capture is not trusted: a person looks at it.
            decision = dataclasses.replace(
                decision, review=True, disposition=Disposition.MANUAL_REVIEW,
                rules_fired=(*decision.rules_fired, "Q-POOR-CAPTURE"),
                reasons=(*decision.reasons, f"Q-POOR-CAPTURE: views failed the quality gate: {', '.join(poor)}"),
            )
        lap("rules")
        # Images first, then the row that points to them, then the divert: a crash at any point never
        # leaves a record without its images or an item sorted without a record.
        hashes = [(f.view, self.store.put_image(f.image).sha256) for f in frames]
        self._seq += 1
        seq = item_seq if item_seq is not None else self._seq
        lane = self.router.lane_for(decision)
        # The comparison's measurements go with the record even when no finding fired (the review queue shows them).
        measurements = comparison_measurements(comparison.identity_score, comparison.delta_e00,
                                               comparison.details.get("best_match_sku"))
        if "presentation" in comparison.details:  # ΔE00, presented and catalogue Lab, tolerance, mismatch
            measurements["presentation"] = comparison.details["presentation"]
        if comparison.details.get("anomaly"):  # per view: peak, calibrated threshold and its source, regions
            measurements["anomaly"] = comparison.details["anomaly"]
        record = record_from_parts(request, norm.kept, decision, lane, hashes, self.detector.version,
                                   self.station_id, timings, operator, measurements=measurements)
        self.store.append(record)
        link = getattr(self.detector, "link", None)  # a shadow model (models/shadow.py) names its disagreements
        if link is not None:
            link(record.record_id)
        self._learn_if_good(request.sku, record, comparison, tuple(norm.kept))
        lap("record")
        self.router.send(seq, lane)
        lap("route")
        return InspectionResult(record, detections, quality, comparison, tuple(norm.kept), tuple(norm.dropped), seen)
