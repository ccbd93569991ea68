"""What the station store's callers hold: its errors, the values it returns (stored image, dead letter, prune
report), box checks, the clock and record ids, and the record a pipeline assembles (``record_from_parts``)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from station.domain import Decision, Finding, InspectionRecord, ReturnRequest

DISK_FULL_ERRNOS = (28, 27, 122)  # ENOSPC, EFBIG (file size limit), EDQUOT
READ_ONLY_ERRNOS = (30,)  # EROFS
DEFAULT_MIN_FREE_BYTES = 32 * 1024 * 1024


class StoreError(RuntimeError):
    """The station store could not be written or read; the message says what to do."""


class RecordLimitError(StoreError, ValueError):
    """A value of a record (order id, SKU, operator ...) is beyond what the platform accepts (station/limits.py):
    refused before it is written, since the platform would refuse the record for good."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An outbox row the platform refused for good: which record, the HTTP status and the platform's reason."""

    record_id: str
    order_id: str
    status: int | None
    reason: str
    refused_at: str
    attempts: int

    def to_json(self) -> dict:
        return {"record_id": self.record_id, "order_id": self.order_id, "status": self.status,
                "reason": self.reason, "refused_at": self.refused_at, "attempts": self.attempts}


class BoxError(StoreError, ValueError):
    """A box correction's box is malformed or names a view or class that the record or the detector lacks."""


def checked_boxes(boxes: Iterable, views: Iterable[str], classes: Sequence[str]) -> list[dict]:
    """``boxes`` (each ``{"view", "class", "box_xyxy"}``) checked against the record's ``views`` and the
    detector's ``classes``; BoxError names the first bad box and what is wrong with it."""
    views = set(views)
    clean = []
    for i, b in enumerate(boxes):
        if not isinstance(b, Mapping):
            raise BoxError(f'box {i}: must be {{"view", "class", "box_xyxy"}}, got {b!r}')
        view, cls, xyxy = b.get("view"), b.get("class"), b.get("box_xyxy")
        if view not in views:
            raise BoxError(f"box {i}: the record has no {view!r} view (it has {', '.join(sorted(views))})")
        if cls not in classes:
            raise BoxError(f"box {i}: unknown class {cls!r}: use one of {', '.join(classes)}")
        try:
            x1, y1, x2, y2 = (float(v) for v in xyxy)
        except (TypeError, ValueError):
            raise BoxError(f"box {i}: box_xyxy must be four numbers [x1, y1, x2, y2], got {xyxy!r}") from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1 or x1 < 0 or y1 < 0:
            raise BoxError(f"box {i}: [x1, y1, x2, y2] needs 0 <= x1 < x2 and 0 <= y1 < y2, got {xyxy!r}")
        clean.append({"view": view, "class": cls, "box_xyxy": [x1, y1, x2, y2]})
    return clean


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_record_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class StoredImage:
    sha256: str
    path: Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_full_hint(exc: BaseException) -> str:
    errno = getattr(exc, "errno", None)
    if errno in DISK_FULL_ERRNOS or "full" in str(exc).lower():
        return " (disk full: free space or move data_dir; nothing was half-written)"
    if errno in READ_ONLY_ERRNOS or "readonly" in str(exc).lower().replace("-", "").replace(" ", ""):
        return " (read-only file system: remount it writable or move data_dir; nothing was half-written)"
    return ""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What retention by disk budget did: images removed (synced ones only) and what is left."""

    pruned: int
    freed_bytes: int
    image_bytes: int  # bytes of images still on disk
    budget_bytes: int
    unsynced_bytes: int  # bytes that could not be pruned because they are not on the platform yet

    @property
    def within_budget(self) -> bool:
        return self.image_bytes <= self.budget_bytes

    def to_json(self) -> dict:
        return {"pruned": self.pruned, "freed_bytes": self.freed_bytes, "image_bytes": self.image_bytes,
                "budget_bytes": self.budget_bytes, "unsynced_bytes": self.unsynced_bytes,
                "within_budget": self.within_budget}


def comparison_measurements(identity_score: float | None, delta_e00: float | None,
                            best_match_sku: str | None) -> dict:
    """The comparison's measurements as stored with a record (``decision_json["measurements"]``)."""
    return {"identity_score": None if identity_score is None else round(float(identity_score), 4),
            "delta_e00": None if delta_e00 is None else round(float(delta_e00), 3),
            "best_match_sku": best_match_sku}


def decision_json(record: InspectionRecord) -> dict:
    """What the ``decision_json`` column holds: the decision and, when taken, the comparison measurements."""
    out = record.decision.to_json()
    if record.measurements is not None:
        out["measurements"] = dict(record.measurements)
    return out


def measurements_of(row) -> dict | None:
    """The comparison measurements stored with a record row (``None`` for records written without them)."""
    return json.loads(row["decision_json"]).get("measurements")


def record_from_parts(request: ReturnRequest, findings: list[Finding], decision: Decision, lane: int,
                      image_hashes: list[tuple[str, str]], model_version: str, station_id: str,
                      timings_ms: dict[str, float], operator: str | None = None,
                      measurements: dict | None = None) -> InspectionRecord:
    return InspectionRecord(new_record_id(), request, tuple(findings), decision, lane,
                            tuple(image_hashes), model_version, station_id, utc_now(), timings_ms, operator,
                            measurements=measurements)
