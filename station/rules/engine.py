"""Rules engine: grade, disposition and liability from findings + request + catalogue item.

Rules are data (TOML, see default_rules.toml). Stages run in order: findings are normalised (noise and
measurements within tolerance dropped), grading (worst grade wins), category rules (grade caps, forced or
forbidden dispositions), liability (first rule that fires), disposition, review. Each stage records the
rule ids that fired so every decision can be explained.
"""

from __future__ import annotations

import re
import tomllib
import dataclasses
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from station.domain import (
    FINDING_KINDS,
    CatalogueItem,
    Decision,
    Disposition,
    Finding,
    FindingSource,
    Grade,
    LiabilityShare,
    Party,
    UNCERTAIN_DEFECT,
    ReturnRequest,
    TextFindingKind,
)

GRADE_ORDER = {Grade.A: 0, Grade.B: 1, Grade.C: 2, Grade.D: 3}
_EXTRA_KINDS = frozenset({"presentation_mismatch"})  # evidence from comparing the stream with the catalogue
FLAGS = ("hygiene", "safety", "liquid")
# Facts about the unit's past or about the stream's presentation, not about the item's condition: they do
# not make an item "not clean". Nor does a detector box below its class's calibrated threshold
# (uncertain_defect): it asks for a look (G-UNCERTAIN-DETECTION), it does not name a defect.
_HISTORY_KINDS = frozenset({"unit_seen_before"})
# near_expiry is about the stock's date, not the item's condition: a clean item near its date is still clean
# (CAT-NEAR-EXPIRY keeps it out of stock).
_NOT_CONDITION_KINDS = _HISTORY_KINDS | _EXTRA_KINDS | {UNCERTAIN_DEFECT, TextFindingKind.NEAR_EXPIRY.value}


class RulesError(ValueError):
    """The rules file is invalid; the message names the rule and the field."""


# ------------------------------------------------------------------------------------------ schema


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    any: list[str] | None = None
    all: list[str] | None = None
    none: list[str] | None = None
    clean: bool | None = None
    category: list[str] | None = None
    flag: list[Literal["hygiene", "safety", "liquid"]] | None = None
    reason: list[str] | None = None
    opened: bool | None = None
    unit_seen_before: bool | None = None
    aligned: tuple[list[str], list[str]] | None = None
    grade: list[Grade] | None = None
    liable: Party | None = None
    within_tolerance: list[str] | None = None  # a measurement of these kinds was taken and is within tolerance

    @field_validator("any", "all", "none", "within_tolerance")
    @classmethod
    def _known_kinds(cls, v: list[str] | None) -> list[str] | None:
        for kind in v or []:
            if kind not in FINDING_KINDS | _EXTRA_KINDS:
                raise ValueError(f"unknown finding kind {kind!r}")
        return v


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    when: Condition = Condition()
    reason: str = ""
    review: bool = False


class GradingRule(Rule):
    grade: Grade


class CategoryRule(Rule):
    grade: Grade | None = None
    max_grade: Grade | None = None
    disposition: Disposition | None = None
    forbid: list[Disposition] = []


class LiabilityRule(Rule):
    shares: dict[Party, float]
    confidence: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "LiabilityRule":
        total = sum(self.shares.values())
        if abs(total - 1.0) > 1e-6 or any(v < 0 for v in self.shares.values()):
            raise ValueError(f"shares must be non-negative and sum to 1, got {total:g}")
        return self


class DispositionRule(Rule):
    disposition: Disposition | None = None
    forbid: list[Disposition] = []


class WeightTolerance(BaseModel):
    """How far a unit may weigh from its catalogue weight_g: the larger of ``grams`` and ``share`` of it (packing
    and print vary by a few grams on a small item, by a few per cent on a large one)."""

    model_config = ConfigDict(extra="forbid")
    grams: float = Field(5.0, ge=0, le=100_000)
    share: float = Field(0.03, ge=0, le=1)

    def around(self, unit_weight_g: float) -> float:
        return max(self.grams, self.share * unit_weight_g)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_score: float = Field(0.3, ge=0, le=1)
    review_below: float = Field(0.5, ge=0, le=1)
    identity_match_above: float = Field(0.9, ge=0, le=1)
    opened_kinds: list[str] = ["seal_broken", "package_damage"]
    align_margin_px: float = 24
    colour_tolerance_de00: dict[str, float] = {"default": 3.0}
    weight_tolerance: dict[str, WeightTolerance] = {"default": WeightTolerance()}
    # days before a printed expiry date that already count as near_expiry, per category
    expiry_margin_days: dict[str, int] = {"default": 0}

    @field_validator("expiry_margin_days")
    @classmethod
    def _margins(cls, v: dict[str, int]) -> dict[str, int]:
        for category, days in v.items():
            if not 0 <= days <= 3660:
                raise ValueError(f"expiry_margin_days.{category} must be between 0 and 3660 days, got {days}")
        return v


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: Settings = Settings()
    grading: list[GradingRule]
    category: list[CategoryRule] = []
    liability: list[LiabilityRule]
    disposition: dict[Grade, list[Disposition]]
    disposition_rules: list[DispositionRule] = []

    @model_validator(mode="after")
    def _checks(self) -> "RuleSet":
        ids = [r.id for r in (*self.grading, *self.category, *self.liability, *self.disposition_rules)]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule ids: {', '.join(dupes)}")
        missing = [g.value for g in Grade if g not in self.disposition]
        if missing:
            raise ValueError(f"[disposition] lacks grades {missing}")
        if not any(r.when == Condition() for r in self.liability):
            raise ValueError("liability needs a final catch-all rule (when = {}) so every return has a payer")
        return self

    @classmethod
    def from_toml_text(cls, text: str, origin: str = "rules") -> "RuleSet":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{origin}: not valid TOML: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RulesError(format_validation_error(exc, data, origin)) from None

    @classmethod
    def load(cls, path: Path | None = None) -> "RuleSet":
        if path is None:
            text = resources.files("station.rules").joinpath("default_rules.toml").read_text(encoding="utf-8")
            return cls.from_toml_text(text, "default_rules.toml")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"cannot read rules file {path}: {exc.strerror}") from None
        return cls.from_toml_text(text, str(path))


def format_validation_error(exc: ValidationError, data: Any, origin: str) -> str:
    """One line per error with its path in the file, naming rules by id where the path runs through one."""
    lines = []
    for err in exc.errors():
        parts: list[str] = []
        node = data
        for loc in err["loc"]:
            if isinstance(loc, int) and isinstance(node, list) and loc < len(node):
                node = node[loc]
                rid = node.get("id") if isinstance(node, dict) else None
                parts[-1] = f"{parts[-1]}[{loc}]" + (f"(id={rid})" if rid else "")
                continue
            parts.append(str(loc))
            node = node.get(loc) if isinstance(node, dict) else None
        where = ".".join(parts) or "(top level)"
        lines.append(f"{origin}: {where}: {err['msg']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ evaluation


@dataclass(slots=True)
class _Facts:
    request: ReturnRequest
    item: CatalogueItem
    findings: list[Finding]
    unit_seen_before: bool
    opened_kinds: frozenset[str]
    align_margin: float
    grade: Grade | None = None
    liable: Party | None = None
    kinds: set[str] = field(default_factory=set)
    # Measurements the rules set aside as within tolerance (ΔE under the category's limit, identity above
    # the match threshold): they are evidence too, e.g. for "the colour is as catalogued".
    within_tolerance: list[Finding] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kinds = {f.kind for f in self.findings}


def _aligned(facts: _Facts, a: list[str], b: list[str]) -> list[Finding]:
    """Findings of kinds b whose box overlaps (with a margin) a finding of kinds a in the same view."""
    out = []
    m = facts.align_margin
    outer = [f for f in facts.findings if f.kind in a and f.box_xyxy is not None]
    for f in facts.findings:
        if f.kind not in b or f.box_xyxy is None:
            continue
        for o in outer:
            if o.view != f.view:
                continue
            ox1, oy1, ox2, oy2 = o.box_xyxy
            fx1, fy1, fx2, fy2 = f.box_xyxy
            if fx1 <= ox2 + m and fx2 >= ox1 - m and fy1 <= oy2 + m and fy2 >= oy1 - m:
                out.extend([o, f])
                break
    return out


def _matches(cond: Condition, facts: _Facts) -> tuple[bool, list[Finding]]:
    """Whether the condition holds, and the findings it rested on (for evidence and confidence)."""
    used: list[Finding] = []
    k = facts.kinds
    if cond.any is not None:
        hit = [f for f in facts.findings if f.kind in cond.any]
        if not hit:
            return False, []
        used += hit
    if cond.all is not None:
        if not set(cond.all) <= k:
            return False, []
        used += [f for f in facts.findings if f.kind in cond.all]
    if cond.none is not None and k & set(cond.none):
        return False, []
    if cond.clean is not None and (not (facts.kinds - _NOT_CONDITION_KINDS)) != cond.clean:
        return False, []
    if cond.category is not None and facts.item.category not in cond.category:
        return False, []
    if cond.flag is not None and not all(getattr(facts.item, f) for f in cond.flag):
        return False, []
    if cond.reason is not None and facts.request.reason.value not in cond.reason:
        return False, []
    if cond.opened is not None:
        opened = [f for f in facts.findings if f.kind in facts.opened_kinds]
        if bool(opened) != cond.opened:
            return False, []
        used += opened
    if cond.unit_seen_before is not None and facts.unit_seen_before != cond.unit_seen_before:
        return False, []
    if cond.aligned is not None:
        pair = _aligned(facts, *cond.aligned)
        if not pair:
            return False, []
        used += pair
    if cond.grade is not None and facts.grade not in cond.grade:
        return False, []
    if cond.liable is not None and facts.liable != cond.liable:
        return False, []
    if cond.within_tolerance is not None:
        hit = [f for f in facts.within_tolerance if f.kind in cond.within_tolerance]
        if not hit:
            return False, []
        used += hit
    return True, used


def _evidence(findings: list[Finding], all_findings: list[Finding]) -> tuple[str, ...]:
    refs = []
    for f in findings:
        idx = next((i for i, g in enumerate(all_findings) if g is f), None)
        if idx is None:  # a measurement within tolerance: cite its value
            ref = f"measurement:{f.kind}={f.value:g}" if f.value is not None else f"measurement:{f.kind}"
        else:
            ref = f"finding[{idx}]:{f.kind}" + (f"@{f.view}" if f.view else "")
        if ref not in refs:
            refs.append(ref)
    return tuple(refs)


def _worse(a: Grade | None, b: Grade | None) -> Grade | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if GRADE_ORDER[b] > GRADE_ORDER[a] else a


@dataclass(slots=True)
class _Trail:
    """The rule ids that fired, their reasons, and which of them ask for a review, in firing order."""

    fired: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)

    def firing(self, rules, facts: _Facts, first_only: bool = False):
        for rule in rules:
            ok, used = _matches(rule.when, facts)
            if not ok:
                continue
            self.fired.append(rule.id)
            self.reasons.append(f"{rule.id}: {rule.reason}")
            if rule.review:
                self.review.append(rule.id)
            yield rule, used
            if first_only:
                return

    def system(self, rule_id: str, reason: str) -> None:
        """A built-in review rule (not in the rules file)."""
        self.fired.append(rule_id)
        self.reasons.append(f"{rule_id}: {reason}")
        self.review.append(rule_id)


@dataclass(frozen=True, slots=True)
class Normalised:
    kept: list[Finding]
    dropped: list[tuple[Finding, str]]  # every finding set aside, with why (noise and measurements alike)
    # Measurements set aside for being within tolerance (not noise): rules may still cite them as evidence.
    within_tolerance: list[Finding]


class RulesEngine:
    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def colour_tolerance(self, category: str) -> float:
        tol = self.rules.settings.colour_tolerance_de00
        return tol.get(category, tol.get("default", 3.0))

    def weight_tolerance_g(self, category: str, unit_weight_g: float) -> float:
        tol = self.rules.settings.weight_tolerance
        return tol.get(category, tol.get("default", WeightTolerance())).around(unit_weight_g)

    def check_weight(self, item: CatalogueItem, measured_g: float, expected_g: float,
                     unit_weights_g: Mapping[str, float] | None = None, categories: Mapping[str, str] | None = None,
                     identity_best_match: str | None = None) -> WeightCheck:
        """The weighed item against its catalogue weight: lighter beyond the category's tolerance is a
        ``missing_part`` (value: the missing share of the unit weight; detail: the grams), heavier is a HEAVY
        verdict without a finding (the caller asks a supervisor). Where the weight is another SKU's and the
        identity check also found the item most like that SKU, it is a ``wrong_item`` instead.
        ``unit_weights_g`` and ``categories``: the whole catalogue's weights and categories, for the hint."""
        return _check_weight(self, item, measured_g, expected_g, unit_weights_g or {}, categories or {},
                             identity_best_match)

    def expiry_margin_days(self, category: str) -> int:
        margins = self.rules.settings.expiry_margin_days
        return margins.get(category, margins.get("default", 0))

    def check_text(self, item: CatalogueItem, reading, expected_serial: str | None, serial_pattern: str | None,
                   shelf_life_days: int | None, today: date) -> "TextCheck":
        """What the text read on the item (a vision.ocr.TextReading) means: a ``serial_mismatch`` where a serial
        read is not ``expected_serial`` (the order's), ``expired`` / ``near_expiry`` from the expiry or
        best-before date read (or the production date + ``shelf_life_days``) against ``today`` and the
        category's margin. What could not be read is a note that sends the item to a supervisor: a serial the
        order names and none read, or a dated SKU without a readable date (the station cannot vouch for it)."""
        return _check_text(self, item, reading, expected_serial, serial_pattern, shelf_life_days, today)

    def normalise(self, findings: list[Finding], item: CatalogueItem) -> Normalised:
        """Drop findings below the noise floor and measurements within tolerance."""
        s = self.rules.settings
        kept, dropped, within = [], [], []
        tolerance = self.colour_tolerance(item.category)
        for f in findings:
            if f.score < s.min_score:
                dropped.append((f, f"score {f.score:.2f} below min_score {s.min_score}"))
                continue
            if f.kind in ("colour_mismatch", "presentation_mismatch") and f.value is not None \
                    and f.value <= tolerance:
                why = f"ΔE00 {f.value:.2f} within tolerance {tolerance}"
            elif f.kind == "wrong_item" and f.value is not None and f.value > s.identity_match_above:
                why = f"identity score {f.value:.2f} above match threshold {s.identity_match_above}"
            else:
                kept.append(f)
                continue
            dropped.append((f, why))
            within.append(f)
        return Normalised(kept, dropped, within)

    def decide(self, request: ReturnRequest, item: CatalogueItem, findings: list[Finding],
               unit_seen_before: bool = False) -> Decision:
        return self.decide_normalised(request, item, self.normalise(findings, item), unit_seen_before)

    def decide_normalised(self, request: ReturnRequest, item: CatalogueItem, norm: Normalised,
                          unit_seen_before: bool = False) -> Decision:
        """``decide`` for callers that also report what was kept and dropped (one normalisation, not two)."""
        s = self.rules.settings
        facts = _Facts(request, item, norm.kept, unit_seen_before, frozenset(s.opened_kinds), s.align_margin_px)
        facts.within_tolerance = norm.within_tolerance
        trail = _Trail()
        grade_evidence: list[Finding] = []

        # Stage 1: grading, worst grade wins.
        grade = Grade.A
        for rule, used in trail.firing(self.rules.grading, facts):
            grade = _worse(grade, rule.grade)
            grade_evidence += used

        # Stage 2: category rules.
        facts.grade = grade
        forced: list[Disposition] = []
        forbidden: set[Disposition] = set()
        cap: Grade | None = None
        for rule, used in trail.firing(self.rules.category, facts):
            grade = _worse(grade, rule.grade)
            cap = _worse(cap, rule.max_grade)
            if rule.disposition is not None:
                forced.append(rule.disposition)
            forbidden |= set(rule.forbid)
            grade_evidence += used
        grade = _worse(grade, cap)  # a cap raises a better grade to it, never lowers a worse one
        facts.grade = grade

        # Stage 3: liability, first rule that fires.
        liability: tuple[LiabilityShare, ...] = ()
        liability_conf = 1.0
        for rule, used in trail.firing(self.rules.liability, facts, first_only=True):
            liability_conf = min(rule.confidence, min((f.score for f in used), default=1.0))
            refs = _evidence(used, norm.kept)
            liability = tuple(
                LiabilityShare(party, share, rule.id, rule.reason, refs, round(liability_conf, 4))
                for party, share in sorted(rule.shares.items(), key=lambda kv: -kv[1])
                if share > 0
            )
            # The liable party is the one holding a majority; an arbitration split has none.
            facts.liable = liability[0].party if liability and liability[0].share > 0.5 else None

        # Stage 4: disposition.
        for rule, _ in trail.firing(self.rules.disposition_rules, facts):
            if rule.disposition is not None:
                forced.append(rule.disposition)
            forbidden |= set(rule.forbid)
        candidates = [d for d in forced if d not in forbidden]
        candidates += [d for d in self.rules.disposition[grade] if d not in forbidden]
        if candidates:
            disposition = candidates[0]
        else:
            disposition = Disposition.MANUAL_REVIEW
            trail.system("R-NO-ALLOWED-DISPOSITION", "every disposition for this grade is forbidden by a rule")

        # Stage 5: review.
        grade_conf = min((f.score for f in grade_evidence), default=1.0)
        confidence = round(min(grade_conf, liability_conf), 4)
        if confidence < s.review_below:
            trail.system("R-LOW-CONFIDENCE", f"decision confidence {confidence:.2f} below {s.review_below}")
        fired, reasons, review_rules = trail.fired, trail.reasons, trail.review
        review = bool(review_rules)
        return Decision(
            grade=grade,
            disposition=Disposition.MANUAL_REVIEW if review else disposition,
            liability=liability,
            review=review,
            rules_fired=tuple(fired),
            reasons=tuple(reasons),
            confidence=confidence,
            proposed_disposition=disposition,
        )


# ------------------------------------------------------------------------------------------ weight


class WeightVerdict(StrEnum):
    WITHIN = "within_tolerance"
    LIGHT = "light"
    HEAVY = "heavy"


@dataclass(frozen=True, slots=True)
class WeightCheck:
    """The weighed item against its SKU's catalogue weight. ``matches``: other SKUs whose unit weight the item
    weighs, within their own category's tolerance (a swap hint: on its own it names no swap, since in a large
    catalogue some SKU weighs nearly anything)."""

    measured_g: float
    expected_g: float
    tolerance_g: float
    verdict: WeightVerdict
    matches: tuple[tuple[str, float], ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def difference_g(self) -> float:
        return self.measured_g - self.expected_g

    def to_json(self) -> dict:
        return {"expected_g": round(self.expected_g, 3), "tolerance_g": round(self.tolerance_g, 3),
                "difference_g": round(self.difference_g, 3), "verdict": self.verdict.value,
                "weighs_like": [{"sku": sku, "unit_weight_g": round(g, 3)} for sku, g in self.matches]}


def _weight_score(excess_g: float, tolerance_g: float) -> float:
    """Confidence of a weight finding: 0.5 at the tolerance, 1.0 at twice it (a scale reading well beyond its
    tolerance is a measurement, not a guess)."""
    return round(min(1.0, 0.5 + 0.5 * excess_g / max(tolerance_g, 1e-9)), 4)


def _check_weight(engine: "RulesEngine", item: CatalogueItem, measured_g: float, expected_g: float,
                  unit_weights_g: Mapping[str, float], categories: Mapping[str, str],
                  identity_best_match: str | None) -> WeightCheck:
    tol = engine.weight_tolerance_g(item.category, expected_g)
    diff = measured_g - expected_g
    verdict = WeightVerdict.WITHIN if abs(diff) <= tol else (WeightVerdict.LIGHT if diff < 0 else WeightVerdict.HEAVY)
    matches = tuple(sorted(
        ((sku, g) for sku, g in unit_weights_g.items()
         if sku != item.sku and abs(measured_g - g) <= engine.weight_tolerance_g(categories.get(sku, ""), g)),
        key=lambda kv: abs(measured_g - kv[1])))
    if verdict is WeightVerdict.WITHIN:
        return WeightCheck(measured_g, expected_g, tol, verdict, matches)
    like = f"; it weighs what {matches[0][0]} weighs ({matches[0][1]:g} g)" if matches else ""
    corroborated = next(((sku, g) for sku, g in matches if sku == identity_best_match), None)
    if corroborated is not None:
        # The identity check found the item most like another SKU and the scale weighs that SKU's weight: two
        # independent measurements agree on a swap, so it is a wrong_item, not a part missing from this SKU.
        finding = Finding("wrong_item", 0.9, FindingSource.CATALOGUE,
                          detail=f"weighs {measured_g:.1f} g, the unit weight of {corroborated[0]} "
                                 f"({corroborated[1]:g} g) that the identity check found it most like, not "
                                 f"{item.sku}'s {expected_g:g} g ± {tol:.1f} g")
        return WeightCheck(measured_g, expected_g, tol, verdict, matches, (finding,))
    if verdict is WeightVerdict.LIGHT:
        missing = -diff
        finding = Finding("missing_part", _weight_score(missing - tol, tol), FindingSource.CATALOGUE,
                          value=round(missing / expected_g, 4),
                          detail=f"weighs {measured_g:.1f} g, catalogue {expected_g:g} g ± {tol:.1f} g: "
                                 f"{missing:.1f} g ({missing / expected_g:.0%}) missing{like}")
        return WeightCheck(measured_g, expected_g, tol, verdict, matches, (finding,))
    return WeightCheck(measured_g, expected_g, tol, verdict, matches)


# ------------------------------------------------------------------------------------------ text


@dataclass(frozen=True, slots=True)
class TrailNote:
    """An outcome the pipeline adds to a decision's trail without a finding (a poor capture, the scale's verdict,
    what the text showed): rule id, reason, and whether it sends the item to a supervisor."""

    rule_id: str
    reason: str
    review: bool = False


def with_notes(decision: Decision, notes: Sequence[TrailNote]) -> Decision:
    """``decision`` with the notes' rule ids and reasons in its trail; any note asking for review sends the
    item to manual_review (the proposed disposition stays for the supervisor)."""
    if not notes:
        return decision
    review = decision.review or any(n.review for n in notes)
    return dataclasses.replace(
        decision, review=review, disposition=Disposition.MANUAL_REVIEW if review else decision.disposition,
        rules_fired=(*decision.rules_fired, *(n.rule_id for n in notes)),
        reasons=(*decision.reasons, *(f"{n.rule_id}: {n.reason}" for n in notes)))


@dataclass(frozen=True, slots=True)
class TextCheck:
    findings: tuple[Finding, ...]
    notes: tuple[TrailNote, ...]
    record: dict  # the record's measurements["text"]
    # (view, box) of every line read, stored or not: where a difference from the SKU's look is print, not damage
    text_boxes: tuple[tuple[str, tuple[float, float, float, float]], ...] = ()


def _normal_serial(text: str) -> str:
    return re.sub(r"[\s\-_.]", "", text).upper()


def _check_text(engine: "RulesEngine", item: CatalogueItem, reading, expected_serial: str | None,
                serial_pattern: str | None, shelf_life_days: int | None, today: date) -> TextCheck:
    findings: list[Finding] = []
    notes: list[TrailNote] = []
    # Only the lines that are evidence (a serial, a date) are kept: other print on a parcel may be a shipping
    # label, and the station stores no buyer names or addresses (domain: records and privacy).
    used = {s.text for s in reading.serials} | {d.text for d in reading.dates}
    record: dict = {"state": "read", "views": list(reading.views), "elapsed_ms": round(reading.elapsed_ms, 1),
                    "texts": [ln.to_json() for ln in reading.lines if ln.text in used or any(ln.text in u for u in used)],
                    "lines_read": len(reading.lines)}
    # --- serial
    reads = list(reading.serials)
    if serial_pattern:
        pattern = re.compile(serial_pattern)
        fitting = [s for s in reads if s.label == "IMEI" or pattern.fullmatch(s.value)]
    else:
        fitting = reads
    record["serials"] = [{"serial": s.value, "label": s.label, "view": s.view, "score": round(s.score, 4),
                          "box_xyxy": [round(v, 1) for v in s.box_xyxy], "text": s.text} for s in reads]
    if expected_serial:
        expected = _normal_serial(expected_serial)
        record["expected_serial"] = expected
        same = [s for s in reads if s.value == expected]
        if same:
            record["serial_verdict"] = "match"
            notes.append(TrailNote("T-SERIAL-MATCH", f"serial {expected} read on the {same[0].view} view: the unit the "
                                                    f"order shipped"))
        elif fitting:
            record["serial_verdict"] = "mismatch"
            s = max(fitting, key=lambda r: r.score)
            findings.append(Finding(TextFindingKind.SERIAL_MISMATCH.value, s.score, FindingSource.CATALOGUE, s.view,
                                    s.box_xyxy, detail=f"read {s.label} {s.value} ({s.text!r}), the order shipped "
                                                       f"{expected}"))
        else:
            record["serial_verdict"] = "unread"
            seen = f" (read {', '.join(s.value for s in reads)}, not a serial of this SKU)" if reads else ""
            notes.append(TrailNote("T-SERIAL-UNREAD", f"the order shipped serial {expected} and no serial could be read "
                                                     f"on the item{seen}: a supervisor checks the label", review=True))
    elif serial_pattern:
        record["serial_verdict"] = "unchecked"
        if fitting:
            notes.append(TrailNote("T-SERIAL-UNCHECKED", f"serial {fitting[0].value} read; the order names no serial "
                                                        f"to check it against"))
    # --- dates
    record["dates"] = [d.to_json() for d in reading.dates]
    printed = [d for d in reading.dates if d.kind.value in ("expiry", "best_before")]
    made = [d for d in reading.dates if d.kind.value == "production"]
    expiry = source = None
    if printed:
        source = min(printed, key=lambda d: d.date)  # two dates on one item: the earlier one binds
        expiry, how = source.date, f"{source.kind.value.replace('_', ' ')} {source.date.isoformat()}"
    elif made and shelf_life_days:
        source = min(made, key=lambda d: d.date)
        expiry = source.date + timedelta(days=shelf_life_days)
        how = (f"produced {source.date.isoformat()} + shelf life {shelf_life_days} days = "
               f"{expiry.isoformat()}")
    if expiry is not None:
        margin = engine.expiry_margin_days(item.category)
        days_left = (expiry - today).days
        record.update({"expiry": expiry.isoformat(), "days_left": days_left, "margin_days": margin,
                       "expiry_text": source.text, "expiry_view": source.view})
        where = f"read on the {source.view} view ({source.text!r})"
        if days_left < 0:
            record["date_verdict"] = "expired"
            findings.append(Finding(TextFindingKind.EXPIRED.value, source.score, FindingSource.CATALOGUE, source.view,
                                    source.box_xyxy, value=float(days_left),
                                    detail=f"{how} {where}: {-days_left} days past on {today.isoformat()}"))
        elif days_left < margin:
            record["date_verdict"] = "near_expiry"
            findings.append(Finding(TextFindingKind.NEAR_EXPIRY.value, source.score, FindingSource.CATALOGUE,
                                    source.view, source.box_xyxy, value=float(days_left),
                                    detail=f"{how} {where}: {days_left} days left, under the {margin}-day margin "
                                           f"for {item.category}"))
        else:
            record["date_verdict"] = "ok"
            notes.append(TrailNote("T-DATE-OK", f"{how} {where}: {days_left} days left (margin {margin})"))
    elif shelf_life_days:
        record["date_verdict"] = "unread"
        other = f" (read {', '.join(d.text for d in reading.dates)}, of no known kind)" if reading.dates else ""
        notes.append(TrailNote("T-DATE-UNREAD", f"a dated product and no expiry, best-before or production date could "
                                               f"be read{other}: a supervisor checks the date", review=True))
    return TextCheck(tuple(findings), tuple(notes), record, tuple((ln.view, ln.box_xyxy) for ln in reading.lines))
