"""Shadow mode: a candidate model sees the same live views as the active one; only the active one decides.

``ShadowDetector`` wraps the active detector (same ``detect``/``class_names``/``version``, so the pipeline and
every record stay the active model's). The candidate runs on a single background worker after the active
result is returned; while it is still busy with an earlier item the next item is skipped (counted), so the
line never waits for it. Where the two disagree (a box of a class the other has no matching box for, IoU
below 0.5), ``on_disagreement`` gets a ``Disagreement``; ``ShadowLog`` stores them in SQLite for review.
A candidate that fails is logged as an error and never touches the decision.

Each disagreement names the inspection record it came from: the pipeline calls ``link(record_id)`` once the
record of the item it last detected on is written. The candidate usually finishes after that; if it finishes
first, its disagreements wait for the link (not the line: nothing blocks). An item that never gets a record
(the pipeline failed after detection) has its disagreements stored without a record id at the next item,
``flush`` or ``close``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from models.evaluate import box_iou
from station.domain import Detections

MATCH_IOU = 0.5


@dataclass(frozen=True, slots=True)
class Disagreement:
    at: str
    active_version: str
    candidate_version: str
    view_index: int
    only_active: tuple[dict, ...]  # boxes the active model found and the candidate did not
    only_candidate: tuple[dict, ...]  # and the other way round
    image_jpeg: bytes  # the view, small, for the reviewer
    record_id: str | None = None  # the inspection record of the item (None: the item was never recorded)

    def to_json(self) -> dict:
        return {"at": self.at, "record_id": self.record_id, "active_version": self.active_version,
                "candidate_version": self.candidate_version, "view_index": self.view_index,
                "only_active": list(self.only_active), "only_candidate": list(self.only_candidate)}


class _Job:
    """One item's shadow comparison: its record id once linked, its disagreements while they wait for it."""

    __slots__ = ("record_id", "linked", "done", "held")

    def __init__(self) -> None:
        self.record_id: str | None = None
        self.linked = False  # the pipeline named the record (or gave up on it)
        self.done = False  # the candidate finished
        self.held: list[Disagreement] = []


def _boxes(det: Detections, idx) -> tuple[dict, ...]:
    return tuple({"class": det.class_names[int(det.class_id[i])], "score": round(float(det.score[i]), 4),
                  "box_xyxy": [round(float(v), 1) for v in det.xyxy[i]]} for i in idx)


def unmatched(a: Detections, b: Detections, iou: float = MATCH_IOU) -> tuple[list[int], list[int]]:
    """Indices of boxes in ``a`` with no same-class box in ``b`` at ``iou``, and of ``b`` with none in ``a``."""
    m = box_iou(a.xyxy, b.xyxy) * (a.class_id[:, None] == b.class_id[None, :]) if len(a) and len(b) else \
        np.zeros((len(a), len(b)))
    only_a = [i for i in range(len(a)) if not (m[i] >= iou).any()]
    only_b = [j for j in range(len(b)) if not (m[:, j] >= iou).any()] if len(a) else list(range(len(b)))
    return only_a, only_b


def _thumb(image: np.ndarray, max_side: int = 320) -> bytes:
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    small = cv2.resize(image, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else image
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else b""


class ShadowDetector:
    """The active detector, with a candidate running beside it in the background."""

    def __init__(self, active, candidate, on_disagreement: Callable[[Disagreement], None],
                 on_error: Callable[[str], None] | None = None) -> None:
        self.active = active
        self.candidate = candidate
        self.on_disagreement = on_disagreement
        self.on_error = on_error
        self.class_names = active.class_names
        self.version = active.version
        self.compared = self.skipped = self.disagreements = self.errors = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._job: _Job | None = None  # the item detected last (None: it was skipped)
        self._lock = threading.Lock()

    @property
    def class_thresholds(self) -> dict[str, float]:
        """The active model's calibrated per-class thresholds (the pipeline splits its boxes by them)."""
        return dict(getattr(self.active, "class_thresholds", None) or {})

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        result = self.active.detect(images)
        with self._lock:
            orphan = self._release(self._job)  # the previous item never got a record
            if self._pending is not None and not self._pending.done():
                self.skipped += 1
                job = None
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
                job = _Job()
                self._pending = self._pool.submit(self._shadow, list(images), result, job)
            self._job = job
        self._emit(orphan)
        return result

    def link(self, record_id: str) -> None:
        """Name the inspection record of the item last passed to ``detect`` (the pipeline, after writing it)."""
        with self._lock:
            job, self._job = self._job, None
            if job is None or job.linked:
                return
            job.record_id, job.linked = record_id, True
            held, job.held = job.held, []
        self._emit([dataclasses.replace(d, record_id=record_id) for d in held])

    def _release(self, job: _Job | None) -> list[Disagreement]:
        """Under the lock: give up waiting for ``job``'s record; its held disagreements go out without one."""
        if job is None or job.linked:
            return []
        job.linked = True
        held, job.held = job.held, []
        return held

    def _emit(self, found: list[Disagreement]) -> None:
        for d in found:
            try:
                self.on_disagreement(d)
            except Exception as exc:  # storing a disagreement must never take the line down either
                self.errors += 1
                if self.on_error is not None:
                    self.on_error(f"shadow disagreement not stored: {exc}")

    def _shadow(self, images: list[np.ndarray], active: list[Detections], job: _Job) -> None:
        found = []
        try:
            cand = self.candidate.detect(images)
            at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
            self.compared += 1
            for k, (a, c) in enumerate(zip(active, cand)):
                only_a, only_c = unmatched(a, c)
                if only_a or only_c:
                    self.disagreements += 1
                    found.append(Disagreement(at, self.active.version, self.candidate.version, k,
                                              _boxes(a, only_a), _boxes(c, only_c), _thumb(images[k])))
        except Exception as exc:  # the candidate must never take the line down
            self.errors += 1
            if self.on_error is not None:
                self.on_error(f"shadow model {getattr(self.candidate, 'version', '?')} failed: {exc}")
        with self._lock:
            job.done = True
            if not job.linked:
                job.held = found  # the record is not written yet: link() stores them
                return
        self._emit([dataclasses.replace(d, record_id=job.record_id) for d in found])

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the candidate's current item (tests, shutdown); an item still without a record has its
        disagreements stored without a record id."""
        pending = self._pending
        if pending is not None:
            pending.result(timeout)
        with self._lock:
            orphan, self._job = self._release(self._job), None
        self._emit(orphan)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.flush()


class ShadowLog:
    """Disagreements in ``<data_dir>/models/shadow.db``; opens its connection on first use (any thread)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("""CREATE TABLE IF NOT EXISTS disagreements (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, active_version TEXT NOT NULL,
                candidate_version TEXT NOT NULL, view_index INTEGER NOT NULL, only_active TEXT NOT NULL,
                only_candidate TEXT NOT NULL, image_jpeg BLOB, record_id TEXT)""")
            if "record_id" not in {r[1] for r in db.execute("PRAGMA table_info(disagreements)")}:
                db.execute("ALTER TABLE disagreements ADD COLUMN record_id TEXT")  # logs from before the link
            self._db = db
        return self._db

    def record(self, d: Disagreement) -> None:
        with self._lock:
            self._conn().execute(
                "INSERT INTO disagreements(at, active_version, candidate_version, view_index, only_active, "
                "only_candidate, image_jpeg, record_id) VALUES (?,?,?,?,?,?,?,?)",
                (d.at, d.active_version, d.candidate_version, d.view_index, json.dumps(list(d.only_active)),
                 json.dumps(list(d.only_candidate)), d.image_jpeg, d.record_id))

    def rows(self, limit: int = 100, candidate: str | None = None, record_id: str | None = None) -> list[dict]:
        """Stored disagreements, newest first; only ``candidate``'s, only those of one record when given."""
        with self._lock:
            if not self.db_path.exists():
                return []
            q = ("SELECT seq, at, record_id, active_version, candidate_version, view_index, only_active, "
                 "only_candidate FROM disagreements")
            where, args = [], []
            if candidate:
                where, args = where + ["candidate_version = ?"], args + [candidate]
            if record_id:
                where, args = where + ["record_id = ?"], args + [record_id]
            if where:
                q += " WHERE " + " AND ".join(where)
            cur = self._conn().execute(q + " ORDER BY seq DESC LIMIT ?", (*args, limit))
            return [{"seq": s, "at": a, "record_id": rid, "active_version": av, "candidate_version": cv,
                     "view_index": v, "only_active": json.loads(oa), "only_candidate": json.loads(oc)}
                    for s, a, rid, av, cv, v, oa, oc in cur]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
