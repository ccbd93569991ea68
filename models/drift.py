"""Drift watch: per-class detection rates and confidence distributions over time, from stored inspections.

Input is the records' rows as dicts (``created_at``, ``model_version``, ``findings_json``, ``overrides``), so this
module needs nothing of the station but its domain types. The most recent ``window`` items are compared with
the ``baseline`` items before them: a class warns when its detection rate (share of items with at least one
detector box of that class) moves more than ``rate_threshold`` or its mean confidence more than
``confidence_threshold``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from station.domain import DETECTOR_CLASSES

BINS = np.linspace(0.0, 1.0, 11)


@dataclass(frozen=True, slots=True)
class DriftPolicy:
    window: int = 200  # recent items
    baseline: int = 1000  # items before them
    rate_threshold: float = 0.10  # absolute change of a class's detection rate
    confidence_threshold: float = 0.10  # absolute change of a class's mean confidence
    min_items: int = 20  # fewer items in either window: report, do not warn


@dataclass(frozen=True, slots=True)
class _Item:
    created_at: str
    model_version: str
    scores: dict[str, list[float]]


def _items(rows: Iterable[dict]) -> list[_Item]:
    out = []
    for row in rows:
        if row.get("overrides"):
            continue  # an override copies (or corrects) findings: not what a model saw
        scores: dict[str, list[float]] = {}
        for f in json.loads(row["findings_json"]):
            if f.get("source") == "detector" and f.get("kind") in DETECTOR_CLASSES:
                scores.setdefault(f["kind"], []).append(float(f.get("score", 0.0)))
        out.append(_Item(row["created_at"], row["model_version"], scores))
    return out


def _summary(items: list[_Item]) -> dict:
    n = len(items)
    per = {}
    for c in DETECTOR_CLASSES:
        conf = [s for it in items for s in it.scores.get(c, [])]
        hits = sum(1 for it in items if c in it.scores)
        per[c] = {"rate": hits / n if n else 0.0, "boxes": len(conf),
                  "mean_confidence": float(np.mean(conf)) if conf else None,
                  "confidence_hist": np.histogram(conf, BINS)[0].tolist()}
    versions = sorted({it.model_version for it in items})
    return {"items": n, "from": items[0].created_at if items else None, "to": items[-1].created_at if items else None,
            "model_versions": versions, "classes": per}


def drift_report(rows: Iterable[dict], policy: DriftPolicy = DriftPolicy()) -> dict:
    """Baseline vs recent per class, a per-day series of rates, and the warnings."""
    items = _items(rows)
    recent = items[-policy.window:] if policy.window else []
    base = items[max(0, len(items) - policy.window - policy.baseline):len(items) - len(recent)]
    b, r = _summary(base), _summary(recent)
    enough = len(base) >= policy.min_items and len(recent) >= policy.min_items
    per_class, warnings = [], []
    for c in DETECTOR_CLASSES:
        bc, rc = b["classes"][c], r["classes"][c]
        rate_delta = rc["rate"] - bc["rate"]
        conf_delta = (rc["mean_confidence"] - bc["mean_confidence"]
                      if rc["mean_confidence"] is not None and bc["mean_confidence"] is not None else None)
        rate_warn = enough and abs(rate_delta) > policy.rate_threshold
        conf_warn = enough and conf_delta is not None and abs(conf_delta) > policy.confidence_threshold
        reasons = []
        if rate_warn:
            reasons.append(f"{c}: detection rate {bc['rate']:.1%} -> {rc['rate']:.1%}")
        if conf_warn:
            reasons.append(f"{c}: mean confidence {bc['mean_confidence']:.2f} -> {rc['mean_confidence']:.2f}")
        warnings += reasons
        per_class.append({"class": c, "baseline_rate": round(bc["rate"], 4), "recent_rate": round(rc["rate"], 4),
                          "rate_delta": round(rate_delta, 4),
                          "baseline_mean_confidence": _r(bc["mean_confidence"]),
                          "recent_mean_confidence": _r(rc["mean_confidence"]),
                          "confidence_delta": _r(conf_delta),
                          "baseline_confidence_hist": bc["confidence_hist"],
                          "recent_confidence_hist": rc["confidence_hist"], "warn": bool(reasons),
                          "rate_warn": rate_warn, "confidence_warn": conf_warn})
    series: dict[str, list[_Item]] = {}
    for it in items:
        series.setdefault(it.created_at[:10], []).append(it)
    return {
        "policy": {"window": policy.window, "baseline": policy.baseline, "rate_threshold": policy.rate_threshold,
                   "confidence_threshold": policy.confidence_threshold, "min_items": policy.min_items},
        "baseline": {k: v for k, v in b.items() if k != "classes"},
        "recent": {k: v for k, v in r.items() if k != "classes"},
        "enough_data": enough,
        "per_class": per_class,
        "series": [{"day": day, "items": len(its),
                    "rates": {c: round(sum(1 for it in its if c in it.scores) / len(its), 4) for c in DETECTOR_CLASSES}}
                   for day, its in sorted(series.items())],
        "warnings": warnings,
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)
