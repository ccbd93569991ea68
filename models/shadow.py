"""Shadow mode: a candidate model sees the same live views as the active one; only the active one decides.

``ShadowDetector`` wraps the active detector (same ``detect``/``class_names``/``version``, so the pipeline and
every record stay the active model's). The candidate runs on a single background worker after the active
result is returned; while it is still busy with an earlier item the next item is skipped (counted), so the
line never waits for it. Where the two disagree (a box of a class the other has no matching box for, IoU
below 0.5), ``on_disagreement`` gets a ``Disagreement``; ``ShadowLog`` stores them in SQLite for review.
A candidate that fails is logged as an error and never touches the decision.
"""

from __future__ import annotations

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

    def to_json(self) -> dict:
        return {"at": self.at, "active_version": self.active_version, "candidate_version": self.candidate_version,
                "view_index": self.view_index, "only_active": list(self.only_active),
                "only_candidate": list(self.only_candidate)}


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
        self._lock = threading.Lock()

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        result = self.active.detect(images)
        with self._lock:
            if self._pending is not None and not self._pending.done():
                self.skipped += 1
                return result
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
            self._pending = self._pool.submit(self._shadow, list(images), result)
        return result

    def _shadow(self, images: list[np.ndarray], active: list[Detections]) -> None:
        try:
            cand = self.candidate.detect(images)
            at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
            self.compared += 1
            for k, (a, c) in enumerate(zip(active, cand)):
                only_a, only_c = unmatched(a, c)
                if only_a or only_c:
                    self.disagreements += 1
                    self.on_disagreement(Disagreement(at, self.active.version, self.candidate.version, k,
                                                      _boxes(a, only_a), _boxes(c, only_c), _thumb(images[k])))
        except Exception as exc:  # the candidate must never take the line down
            self.errors += 1
            if self.on_error is not None:
                self.on_error(f"shadow model {getattr(self.candidate, 'version', '?')} failed: {exc}")

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the candidate's current item (tests, shutdown)."""
        pending = self._pending
        if pending is not None:
            pending.result(timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


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
                only_candidate TEXT NOT NULL, image_jpeg BLOB)""")
            self._db = db
        return self._db

    def record(self, d: Disagreement) -> None:
        with self._lock:
            self._conn().execute(
                "INSERT INTO disagreements(at, active_version, candidate_version, view_index, only_active, "
                "only_candidate, image_jpeg) VALUES (?,?,?,?,?,?,?)",
                (d.at, d.active_version, d.candidate_version, d.view_index, json.dumps(list(d.only_active)),
                 json.dumps(list(d.only_candidate)), d.image_jpeg))

    def rows(self, limit: int = 100, candidate: str | None = None) -> list[dict]:
        with self._lock:
            if not self.db_path.exists():
                return []
            q = ("SELECT seq, at, active_version, candidate_version, view_index, only_active, only_candidate "
                 "FROM disagreements")
            args: tuple = ()
            if candidate:
                q, args = q + " WHERE candidate_version = ?", (candidate,)
            cur = self._conn().execute(q + " ORDER BY seq DESC LIMIT ?", (*args, limit))
            return [{"seq": s, "at": a, "active_version": av, "candidate_version": cv, "view_index": v,
                     "only_active": json.loads(oa), "only_candidate": json.loads(oc)}
                    for s, a, av, cv, v, oa, oc in cur]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
