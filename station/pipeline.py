"""The inspection pipeline: request -> frames -> quality gate -> detector -> catalogue comparer -> rules
-> record -> route. Each stage sits behind a small interface; the pipeline only wires them and times them.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from hardware.scale import ScaleState, WeightMeasurement
from models.onnx_yolo import Detector
from station.domain import (UNCERTAIN_DEFECT, Decision, Detections, Disposition, Finding, FindingSource, Frame, Grade,
                            InspectionRecord, ReturnRequest, lane_for)
from station.records import StationStore, comparison_measurements, record_from_parts
from station.rules import RulesEngine
from station.rules.engine import TextCheck, TrailNote, WeightVerdict, with_notes
from vision.catalogue import Catalogue
from vision.compare import Comparer, Comparison
from vision.ocr import OcrUnavailable, TextReader
from vision.quality import QualityGate, QualityVerdict

log = logging.getLogger(__name__)

STAGES = ("quality", "detect", "compare", "text", "weigh", "history", "rules", "record", "route")


class Router(Protocol):
    def lane_for(self, decision: Decision) -> int: ...

    def send(self, item_seq: int, lane: int) -> None: ...


class Scale(Protocol):
    def measure(self) -> WeightMeasurement: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Weighing:
    """What the scale gave one item and what it means: findings for the rules, notes for the trail, and the
    measurement as recorded (``record``: state, grams, catalogue weight, tolerance, verdict)."""

    findings: tuple[Finding, ...]
    notes: tuple[TrailNote, ...]
    record: dict


class _PendingWeight:
    """The weighing runs beside the detector and the comparer (it is mostly waiting on the serial line)."""

    def __init__(self, scale: Scale) -> None:
        self._scale = scale
        self._result: WeightMeasurement | None = None
        self._thread = threading.Thread(target=self._run, name="weigh", daemon=True)

    def start(self) -> "_PendingWeight":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._result = self._scale.measure()
        except Exception as exc:  # noqa: BLE001 - measure() does not raise; a scale bug still must not stop an item
            log.exception("scale failed")
            self._result = WeightMeasurement(ScaleState.FAULT, None, f"scale failure: {exc}")

    def result(self) -> WeightMeasurement:
        self._thread.join()  # bounded: measure() gives up after its stable timeout plus one command timeout
        assert self._result is not None
        return self._result


class LaneRouter:
    """Maps a disposition to a lane (from config) and tells the conveyor or the bench."""

    def __init__(self, lanes: dict[Disposition, int], conveyor) -> None:
        self.lanes = lanes
        self.conveyor = conveyor

    def lane_for(self, decision: Decision) -> int:
        return lane_for(self.lanes, decision.disposition)

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
    weight: dict | None = None  # the bench scale's measurement and verdict; None when no scale is configured
    text: dict | None = None  # what OCR read and what it means; None for SKUs that carry no text to read

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
            "weight": self.weight,
            "text": self.text,
            "marketplace": (self.record.measurements or {}).get("marketplace"),
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
                 rules: RulesEngine, store: StationStore, router: Router, station_id: str,
                 scale: Scale | None = None, review_when_unweighed: bool = False, outbound=None,
                 text_reader: TextReader | None = None, read_text: bool = True,
                 today: Callable[[], datetime.date] = datetime.date.today) -> None:
        """``scale``: the bench scale (hardware.scale.MtSicsScale) when one is configured; each item is weighed
        once. ``review_when_unweighed``: an item the scale could not weigh goes to manual review (default: it is
        decided without its weight, and the reasons say so)."""
        self.catalogue = catalogue
        self.quality_gate = quality_gate
        self.detector = detector
        self.comparer = comparer
        self.rules = rules
        self.store = store
        self.router = router
        self.station_id = station_id
        self.scale = scale
        self.review_when_unweighed = review_when_unweighed
        self.outbound = outbound  # station.outbound.Outbound: licence-plate label, webhook, marketplace codes
        # OCR of serials and dates, only for orders that name the serial shipped and SKUs whose catalogue row has
        # shelf_life_days (other items pay nothing). The reader loads its models on the first such item. ``read_text=False``: never read
        # (such items then go to a supervisor: the station cannot vouch for their serial or date).
        self.read_text = read_text
        self.text_reader = text_reader if text_reader is not None else TextReader()
        self.today = today
        self._seq = 0

    def check_text(self, item, request: ReturnRequest, frames: Sequence[Frame]) -> TextCheck | None:
        """OCR of the item's views and what it means (rules.check_text); None for a SKU without text to read."""
        pattern = self.catalogue.serial_pattern(item.sku)
        shelf = self.catalogue.shelf_life_days(item.sku)
        # A serial is checked against the one the order shipped: without it there is nothing to compare, and OCR
        # (about 250 ms a view on 2 cores) is paid only where it can decide something.
        if shelf is None and not request.serial:
            return None
        if not self.read_text:
            return TextCheck((), (TrailNote("T-OCR-UNAVAILABLE", "text reading is off ([ocr] enabled = false): serial "
                                                                "and date not checked, a supervisor checks them",
                                           review=True),), {"state": "off"})
        wanted = self.catalogue.text_views(item.sku)
        # Only the views the catalogue says carry the text (OCR costs ~250 ms a view); None: every view.
        frames = [f for f in frames if wanted is None or f.view in wanted]
        if not frames:
            return TextCheck((), (TrailNote("T-TEXT-VIEW-MISSING", f"the text is on the {', '.join(wanted)} view, "
                                                                  f"which was not captured: serial and date not "
                                                                  f"checked, a supervisor checks them",
                                           review=True),), {"state": "view_missing", "text_views": list(wanted)})
        try:
            reading = self.text_reader.read_frames(frames, serial_pattern=pattern, today=self.today())
        except OcrUnavailable as exc:  # the decision is still made, by a person for what OCR would have checked
            log.warning("OCR unavailable: %s", exc)
            return TextCheck((), (TrailNote("T-OCR-UNAVAILABLE", f"text could not be read ({exc}): serial and date "
                                                                f"not checked, a supervisor checks them",
                                           review=True),), {"state": "unavailable", "detail": str(exc)})
        check = self.rules.check_text(item, reading, request.serial, pattern, shelf, self.today())
        return replace(check, record={**check.record, "text_views": [f.view for f in frames],
                                      "lots": [lot.to_json() for lot in reading.lots]})

    def weigh(self, item, measurement: WeightMeasurement, comparison: Comparison) -> Weighing:
        """The scale's measurement against the catalogue's unit weight (rules: ``settings.weight_tolerance``)."""
        record = measurement.to_json()
        if not measurement.available:
            why = ("W-SCALE-UNAVAILABLE", f"scale unavailable ({measurement.state.value}: {measurement.detail}): "
                                            f"not graded on weight")
            return Weighing((), (TrailNote(*why, review=self.review_when_unweighed),), record)
        grams = float(measurement.grams)
        expected = self.catalogue.unit_weight_g(item.sku)
        if expected is None:
            record["verdict"] = "no_unit_weight"
            return Weighing((), (TrailNote("W-NO-UNIT-WEIGHT", f"weighs {grams:.1f} g; the catalogue has no weight_g "
                                            f"for {item.sku}: not graded on weight"),), record)
        check = self.rules.check_weight(item, grams, expected, self.catalogue.unit_weights_g,
                                        {sku: i.category for sku, i in self.catalogue.items.items()},
                                        comparison.details.get("best_match_sku"))
        record.update(check.to_json())
        said = f"weighs {grams:.1f} g, catalogue {expected:g} g ± {check.tolerance_g:.1f} g"
        if check.findings:
            notes = ()  # the finding (missing_part, or wrong_item) carries the weight; its rules explain it
        elif check.verdict is WeightVerdict.HEAVY:
            like = f"; it weighs what {check.matches[0][0]} weighs" if check.matches else ""
            notes = (TrailNote("W-OVERWEIGHT", f"{said}: {check.difference_g:.1f} g heavier than a unit (something "
                                                f"added, or another item{like}): a supervisor looks", review=True),)
        else:
            notes = (TrailNote("W-WEIGHT-OK", f"{said}: within tolerance"),)
        return Weighing(check.findings, notes, record)

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
        pending = _PendingWeight(self.scale).start() if self.scale is not None else None
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
        text = self.check_text(item, request, frames)
        if text is not None:
            # Printed text varies unit by unit (serial, date stamp): where OCR read a line, a difference from the
            # SKU's good appearance is the print, not damage.
            findings = [f for f in findings
                        if not (f.kind == "damage" and f.box_xyxy is not None
                                and any(v == f.view and _overlap(f.box_xyxy, box) for v, box in text.text_boxes))]
            findings += text.findings
            lap("text")  # only items that were read (as "weigh" only where a scale is)
        weighing = None
        if pending is not None:
            weighing = self.weigh(item, pending.result(), comparison)
            findings += weighing.findings
            lap("weigh")  # only the wait beyond detection and comparison
        seen = self.store.unit_seen_before(request.unit_code, excluding_order=request.order_id)
        if seen:
            findings.append(Finding("unit_seen_before", 1.0, FindingSource.HISTORY,
                                    detail=f"unit code {request.unit_code} is in an earlier return"))
        lap("history")
        norm = self.rules.normalise(findings, item)
        decision = self.rules.decide_normalised(request, item, norm, unit_seen_before=seen)
        poor = [f"{v} ({'; '.join(q.problems)})" for v, q in quality.items() if not q.ok]
        # A decision on a bad capture is not trusted: a person looks at it.
        notes = [TrailNote("Q-POOR-CAPTURE", f"views failed the quality gate: {', '.join(poor)}", review=True)] \
            if poor else []
        notes += (weighing.notes if weighing is not None else ()) + (text.notes if text is not None else ())
        decision = with_notes(decision, notes)
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
        if weighing is not None:  # state (measured / unavailable), grams, catalogue weight, tolerance, verdict
            measurements["weight"] = weighing.record
        if text is not None:  # lines read (text, score, box, view), serials, dates, expected serial, verdicts
            measurements["text"] = text.record
        if self.outbound is not None:  # condition codes as the marketplaces name this grade (domain.md's table)
            measurements["marketplace"] = self.outbound.marketplace_codes(decision.grade, decision.disposition,
                                                                          item.category)
        record = record_from_parts(request, norm.kept, decision, lane, hashes, self.detector.version,
                                   self.station_id, timings, operator, measurements=measurements)
        self.store.append(record)
        link = getattr(self.detector, "link", None)  # a shadow model (models/shadow.py) names its disagreements
        if link is not None:
            link(record.record_id)
        self._learn_if_good(request.sku, record, comparison, tuple(norm.kept))
        if self.outbound is not None:  # label and webhook queued after the record is durable; never raises
            self.outbound.after_decision(record, item.category, measurements.get("marketplace"))
        lap("record")
        self.router.send(seq, lane)
        lap("route")
        return InspectionResult(record, detections, quality, comparison, tuple(norm.kept), tuple(norm.dropped), seen,
                                None if weighing is None else weighing.record, None if text is None else text.record)
