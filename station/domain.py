"""Domain types of the returns inspection station. Names of enums are contracts (see docs/domain.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from math import ceil
from typing import Mapping, Sequence

import numpy as np

DETECTOR_CLASSES: tuple[str, ...] = (
    "scratch", "dent", "crack", "tear", "stain", "leak", "wear", "seal_broken", "package_damage", "foreign_object",
)


class CatalogueFindingKind(StrEnum):
    WRONG_ITEM = "wrong_item"
    MISSING_PART = "missing_part"
    DAMAGE = "damage"  # differs from the SKU's good appearance where no detector class says what it is
    COLOUR_MISMATCH = "colour_mismatch"
    SIZE_MISMATCH = "size_mismatch"
    UNIT_SEEN_BEFORE = "unit_seen_before"
    # A view could not be registered to its catalogue view (vision.align.RegistrationResult says why): the
    # station could not see it well enough to compare, so no difference was taken there.
    REGISTRATION_FAILED = "registration_failed"


class TextFindingKind(StrEnum):
    """What the text read on the item (vision.ocr) shows. ``value``: days from the inspection to the date read
    (negative: past it) for the two date kinds."""

    SERIAL_MISMATCH = "serial_mismatch"  # the serial read is not the one the order shipped (a swap)
    EXPIRED = "expired"  # the expiry / best-before date read is past
    NEAR_EXPIRY = "near_expiry"  # within the category's margin of it (rules: settings.expiry_margin_days)


# A detector box scored at or above the decode floor but below its class's calibrated threshold (model card
# ``thresholds.per_class``): evidence for a supervisor to look at, not a named defect.
UNCERTAIN_DEFECT = "uncertain_defect"

FINDING_KINDS: frozenset[str] = (frozenset(DETECTOR_CLASSES) | {k.value for k in CatalogueFindingKind}
                                 | {k.value for k in TextFindingKind} | {UNCERTAIN_DEFECT})


class Category(StrEnum):
    INFANT_FEEDING = "infant_feeding"
    INFANT_SAFETY = "infant_safety"
    INFANT_CARE = "infant_care"
    ELECTRONICS = "electronics"
    APPAREL = "apparel"
    COSMETICS = "cosmetics"
    TOYS = "toys"
    HOUSEHOLD = "household"


class ReturnReason(StrEnum):
    NO_REASON_7DAY = "no_reason_7day"
    QUALITY_ISSUE = "quality_issue"
    NOT_AS_DESCRIBED = "not_as_described"
    COLOUR_DIFFERENCE = "colour_difference"
    WRONG_SIZE = "wrong_size"
    DAMAGED_IN_TRANSIT = "damaged_in_transit"
    WRONG_ITEM = "wrong_item"
    MISSING_PARTS = "missing_parts"


class Grade(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"


class Disposition(StrEnum):
    RESTOCK = "restock"
    OPEN_BOX = "open_box"
    REFURBISH = "refurbish"
    RETURN_TO_VENDOR = "return_to_vendor"
    RECYCLE = "recycle"
    DONATE = "donate"
    SCRAP = "scrap"
    MANUAL_REVIEW = "manual_review"


def lane_for(lanes: Mapping[Disposition, int], disposition: Disposition) -> int:
    """The physical lane a disposition goes to. A disposition the lane table does not name goes where a
    supervisor looks (the manual-review lane, lane 0 when even that is unset), never to stock."""
    return lanes.get(disposition, lanes.get(Disposition.MANUAL_REVIEW, 0))


class Party(StrEnum):
    CONSUMER = "consumer"
    BRAND = "brand"
    CARRIER = "carrier"
    STREAMER = "streamer"
    PLATFORM = "platform"


class FindingSource(StrEnum):
    DETECTOR = "detector"
    CATALOGUE = "catalogue"
    HISTORY = "history"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class ReturnRequest:
    """What the RMA / return QR says. Holds no buyer PII by design (domain: records and privacy)."""

    order_id: str
    sku: str
    reason: ReturnReason
    unit_code: str | None = None
    channel: str | None = None
    streamer: str | None = None
    brand: str | None = None
    carrier: str | None = None
    serial: str | None = None  # the serial / IMEI of the unit the order shipped, when the RMA or platform has it


@dataclass(frozen=True, slots=True)
class LabColour:
    """CIELAB (D50, as the catalogue stores it)."""

    l: float
    a: float
    b: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.l, self.a, self.b)


@dataclass(frozen=True, slots=True)
class DimensionsMm:
    width: float
    height: float
    depth: float | None = None


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    sku: str
    category: str  # a Category value, or a catalogue's own category (gets the general rules)
    brand: str
    name: str = ""
    reference_images: tuple[str, ...] = ()
    reference_lab: LabColour | None = None
    dimensions_mm: DimensionsMm | None = None
    hygiene: bool = False
    safety: bool = False
    liquid: bool = False


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured view. ``image`` is BGR uint8 as OpenCV delivers it."""

    image: np.ndarray
    view: str
    source: str = ""
    timestamp: float = 0.0


@dataclass(frozen=True, slots=True)
class Detections:
    """Detector output for one frame, as arrays (supervision style): N boxes xyxy in frame pixels."""

    xyxy: np.ndarray  # (N, 4) float32
    class_id: np.ndarray  # (N,) int32
    score: np.ndarray  # (N,) float32
    class_names: tuple[str, ...]

    @classmethod
    def empty(cls, class_names: tuple[str, ...]) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), np.zeros((0,), np.float32), class_names)

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def names(self) -> list[str]:
        return [self.class_names[int(i)] for i in self.class_id]


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of evidence: a detector box, a catalogue check result or a history fact."""

    kind: str  # a detector class, UNCERTAIN_DEFECT or a CatalogueFindingKind value
    score: float
    source: FindingSource
    view: str | None = None
    box_xyxy: tuple[float, float, float, float] | None = None
    value: float | None = None  # a measurement: ΔE for colour, identity score for wrong_item, ...
    detail: str = ""

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind, "score": round(float(self.score), 4), "source": self.source.value}
        if self.view is not None:
            out["view"] = self.view
        if self.box_xyxy is not None:
            out["box_xyxy"] = [round(float(v), 1) for v in self.box_xyxy]
        if self.value is not None:
            out["value"] = round(float(self.value), 4)
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class LiabilityShare:
    party: Party
    share: float
    rule: str
    reason: str
    evidence: tuple[str, ...] = ()
    confidence: float = 1.0

    def to_json(self) -> dict:
        return {"party": self.party.value, "share": round(self.share, 4), "rule": self.rule, "reason": self.reason,
                "evidence": list(self.evidence), "confidence": round(self.confidence, 4)}


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules decided, with every rule id that fired."""

    grade: Grade
    disposition: Disposition
    liability: tuple[LiabilityShare, ...]
    review: bool
    rules_fired: tuple[str, ...]
    reasons: tuple[str, ...] = ()
    confidence: float = 1.0
    proposed_disposition: Disposition | None = None  # what it would be without the review flag

    def to_json(self) -> dict:
        return {
            "grade": self.grade.value,
            "disposition": self.disposition.value,
            "proposed_disposition": (self.proposed_disposition or self.disposition).value,
            "liability": [s.to_json() for s in self.liability],
            "review": self.review,
            "rules_fired": list(self.rules_fired),
            "reasons": list(self.reasons),
            "confidence": round(self.confidence, 4),
        }


@dataclass(frozen=True, slots=True)
class InspectionRecord:
    """Everything the station knows about one inspection; stored append-only."""

    record_id: str
    request: ReturnRequest
    findings: tuple[Finding, ...]
    decision: Decision
    lane: int
    image_hashes: tuple[tuple[str, str], ...]  # (view, sha256)
    model_version: str
    station_id: str
    created_at: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    operator: str | None = None
    overrides: str | None = None  # record id this one overrides
    override_reason: str | None = None
    # What the catalogue comparison measured, whether or not a finding fired: identity_score, delta_e00,
    # best_match_sku. Stored in decision_json["measurements"] (so it is in the evidence log and synced).
    measurements: dict | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 <= q <= 1) of ``values``: the smallest value with at least ``q`` of
    them at or below it; always one of the values, never interpolated. NaN when there are none. The one
    percentile every benchmark reports with, so their p50 / p95 mean the same thing."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"percentile q must be within 0..1, got {q}")
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = ceil(round(q * len(ordered), 9))  # round first: 0.07 * 100 is 7.000000000000001, rank 7 not 8
    return ordered[min(len(ordered) - 1, max(0, rank - 1))]
