"""Dashboard numbers from the station store (no Qt; runs on the worker thread)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from dataclasses import dataclass

from models.drift import DriftPolicy, drift_report
from station.sync import SyncStatus, read_status


@dataclass(frozen=True, slots=True)
class DashboardStats:
    total_items: int
    awaiting_review: int
    overrides: int
    per_hour: tuple[tuple[str, int], ...]  # ("09:00", n) for the last hours, oldest first
    grades: dict[str, int]
    dispositions: dict[str, int]
    pareto: tuple[tuple[str, int], ...]  # finding kind, count; most frequent first
    liability: dict[str, float]  # party -> sum of shares (returns' worth of liability)
    top_brands: tuple[tuple[str, int], ...]  # brand -> returns attributed to the brand
    top_streamers: tuple[tuple[str, int], ...]
    pending_sync: int  # records in the outbox not yet acknowledged by the platform
    sync: SyncStatus | None = None


def dashboard_stats(store, now: dt.datetime | None = None, hours: int = 12, top: int = 5) -> DashboardStats:
    """Effective decision = the latest record of each order (an override replaces what it overrides)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    latest: dict[str, tuple] = {}
    per_hour: Counter = Counter()
    start = (now - dt.timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    overrides = 0
    for row in store.db.execute("SELECT order_id, created_at, brand, streamer, grade, disposition, review, overrides, "
                                "decision_json, findings_json FROM inspections ORDER BY seq"):
        order_id, created, brand, streamer, grade, disp, review, over, decision, findings = row
        latest[order_id] = row
        if over:
            overrides += 1
            continue
        t = dt.datetime.fromisoformat(created)
        if t >= start:
            per_hour[t.replace(minute=0, second=0, microsecond=0)] += 1
    grades: Counter = Counter()
    disps: Counter = Counter()
    pareto: Counter = Counter()
    liability: dict[str, float] = defaultdict(float)
    brands: Counter = Counter()
    streamers: Counter = Counter()
    review = 0
    for _, _, brand, streamer, grade, disp, rev, _, decision, findings in latest.values():
        review += bool(rev)
        grades[grade] += 1
        disps[disp] += 1
        pareto.update({f["kind"] for f in json.loads(findings)})
        for share in json.loads(decision).get("liability", []):
            liability[share["party"]] += float(share["share"])
            if share["party"] == "brand" and share["share"] > 0 and brand:
                brands[brand] += 1
            if share["party"] == "streamer" and share["share"] > 0 and streamer:
                streamers[streamer] += 1
    buckets = [start + dt.timedelta(hours=h) for h in range(hours)]
    return DashboardStats(
        total_items=len(latest), awaiting_review=review, overrides=overrides,
        per_hour=tuple((b.astimezone().strftime("%H:00"), per_hour.get(b, 0)) for b in buckets),
        grades={g: grades.get(g, 0) for g in "ABCD"}, dispositions=dict(disps.most_common()),
        pareto=tuple(pareto.most_common()), liability=dict(liability),
        top_brands=tuple(brands.most_common(top)), top_streamers=tuple(streamers.most_common(top)),
        pending_sync=store.pending_count(), sync=read_status(store),
    )


# ------------------------------------------------------------------------------------------- drift watch


@dataclass(frozen=True, slots=True)
class ClassDrift:
    kind: str  # a detector class
    baseline_rate: float  # share of items with at least one box of the class
    recent_rate: float
    baseline_confidence: float | None  # mean box confidence; None: no boxes
    recent_confidence: float | None
    baseline_hist: tuple[int, ...]  # box confidences in 10 bins of 0.1
    recent_hist: tuple[int, ...]
    rate_moved: bool  # beyond the policy's threshold (only judged with enough items)
    confidence_moved: bool

    @property
    def warn(self) -> bool:
        return self.rate_moved or self.confidence_moved


@dataclass(frozen=True, slots=True)
class DriftStats:
    recent_items: int
    baseline_items: int
    enough_data: bool
    policy: DriftPolicy
    classes: tuple[ClassDrift, ...]  # every detector class, in DETECTOR_CLASSES order

    @property
    def drifted(self) -> tuple[ClassDrift, ...]:
        return tuple(c for c in self.classes if c.warn)


def drift_stats(store, policy: DriftPolicy) -> DriftStats:
    """models.drift over the newest ``window + baseline`` model decisions only (not the whole table, and no
    image rows): cheap enough for the dashboard's timer. Overrides are left out as drift_report does."""
    cur = store.db.execute("SELECT created_at, model_version, findings_json FROM inspections "
                           "WHERE overrides IS NULL OR overrides = '' ORDER BY seq DESC LIMIT ?",
                           (policy.window + policy.baseline,))
    rows = [{"created_at": c, "model_version": m or "", "findings_json": f, "overrides": None}
            for c, m, f in reversed(cur.fetchall())]
    report = drift_report(rows, policy)
    classes = tuple(ClassDrift(
        c["class"], c["baseline_rate"], c["recent_rate"], c["baseline_mean_confidence"], c["recent_mean_confidence"],
        tuple(c["baseline_confidence_hist"]), tuple(c["recent_confidence_hist"]), c["rate_warn"], c["confidence_warn"])
        for c in report["per_class"])
    return DriftStats(report["recent"]["items"], report["baseline"]["items"], bool(report["enough_data"]), policy,
                      classes)
