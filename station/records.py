"""Station records: SQLite (WAL) with schema migrations; images on disk by content hash.

Every inspection and every override is an append-only row: triggers refuse UPDATE and DELETE, and an
override is a new row that points to the record it overrides, with who, when and why. Images are
written atomically (temp file, fsync, rename) before the row that points to them.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np

from station.dbhandle import (PRIVATE_FILE_MODE, SqliteHandle, clear_group_other, private_dir,
                              private_sqlite_files)
from station.domain import DETECTOR_CLASSES, Decision, Disposition, Finding, Grade, InspectionRecord, ReturnRequest
from station.evidence import EvidenceError, EvidenceLog, StationKey, SignedTreeHead
from station.limits import LimitError, check_fields, request_values

MIGRATIONS: tuple[str, ...] = (
    # 1: inspections, images and their links; append-only enforced by triggers.
    """
    CREATE TABLE inspections (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        station_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        sku TEXT NOT NULL,
        unit_code TEXT,
        reason TEXT NOT NULL,
        channel TEXT, streamer TEXT, brand TEXT, carrier TEXT,
        grade TEXT NOT NULL,
        disposition TEXT NOT NULL,
        review INTEGER NOT NULL,
        lane INTEGER,
        confidence REAL NOT NULL,
        model_version TEXT NOT NULL,
        rules_fired TEXT NOT NULL,
        decision_json TEXT NOT NULL,
        findings_json TEXT NOT NULL,
        timings_json TEXT NOT NULL,
        operator TEXT,
        overrides TEXT REFERENCES inspections(record_id),
        override_reason TEXT
    );
    CREATE INDEX inspections_unit ON inspections(unit_code);
    CREATE INDEX inspections_order ON inspections(order_id);
    CREATE TABLE images (
        sha256 TEXT PRIMARY KEY,
        relpath TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE inspection_images (
        record_id TEXT NOT NULL REFERENCES inspections(record_id),
        view TEXT NOT NULL,
        sha256 TEXT NOT NULL REFERENCES images(sha256),
        PRIMARY KEY (record_id, view, sha256)
    );
    CREATE TRIGGER inspections_no_update BEFORE UPDATE ON inspections
        BEGIN SELECT RAISE(ABORT, 'inspection records are append-only: write an override instead'); END;
    CREATE TRIGGER inspections_no_delete BEFORE DELETE ON inspections
        BEGIN SELECT RAISE(ABORT, 'inspection records are append-only: write an override instead'); END;
    CREATE TRIGGER inspection_images_no_update BEFORE UPDATE ON inspection_images
        BEGIN SELECT RAISE(ABORT, 'inspection records are append-only'); END;
    CREATE TRIGGER inspection_images_no_delete BEFORE DELETE ON inspection_images
        BEGIN SELECT RAISE(ABORT, 'inspection records are append-only'); END;
    """,
    # 2: outbox (records to send, written with the record), evidence log (leaves + signed heads), image sync and
    #    retention state, sync state, RMAs and catalogue deltas pulled from the platform.
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL UNIQUE REFERENCES inspections(record_id),
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_pending ON outbox(sent_at, seq);
    INSERT INTO outbox(record_id, created_at) SELECT record_id, created_at FROM inspections ORDER BY seq;
    CREATE TABLE evidence_leaves (
        idx INTEGER PRIMARY KEY,
        record_id TEXT NOT NULL UNIQUE REFERENCES inspections(record_id),
        leaf_hash TEXT NOT NULL
    );
    CREATE TABLE tree_heads (
        tree_size INTEGER PRIMARY KEY,
        root_hash TEXT NOT NULL,
        signed_at TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE TRIGGER evidence_leaves_no_update BEFORE UPDATE ON evidence_leaves
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    CREATE TRIGGER evidence_leaves_no_delete BEFORE DELETE ON evidence_leaves
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    CREATE TRIGGER tree_heads_no_update BEFORE UPDATE ON tree_heads
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    CREATE TRIGGER tree_heads_no_delete BEFORE DELETE ON tree_heads
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    ALTER TABLE images ADD COLUMN uploaded_at TEXT;
    ALTER TABLE images ADD COLUMN pruned_at TEXT;
    CREATE INDEX images_created ON images(created_at);
    CREATE INDEX inspection_images_sha ON inspection_images(sha256);
    CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE rmas (order_id TEXT PRIMARY KEY, payload TEXT NOT NULL, server_seq INTEGER NOT NULL);
    CREATE TABLE catalogue_updates (sku TEXT PRIMARY KEY, payload TEXT NOT NULL, server_seq INTEGER NOT NULL);
    """,
    # 3: dead letters. A record the platform refuses for good (a 4xx about the record itself) is set aside with
    #    the status and the platform's reason, so it no longer blocks every later record; it stays in the
    #    outbox (sent_at NULL) and `station sync --retry-dead` queues it again after a fix on either side.
    """
    ALTER TABLE outbox ADD COLUMN dead_at TEXT;
    ALTER TABLE outbox ADD COLUMN dead_status INTEGER;
    ALTER TABLE outbox ADD COLUMN dead_reason TEXT;
    ALTER TABLE outbox ADD COLUMN dead_attempts INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_dead ON outbox(dead_at);
    """,
)

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


def _check_limits(values: Mapping[str, str | None]) -> None:
    try:
        check_fields(values)
    except LimitError as exc:
        raise RecordLimitError(exc.field, f"{exc}; nothing was written") from None


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_full_hint(exc: BaseException) -> str:
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


class StationStore(SqliteHandle):
    """Opened explicitly with ``open()`` (no I/O in the constructor).

    Besides the records it keeps the transactional outbox (every record is queued for the platform in the
    same transaction that writes it) and the evidence log (every record is appended to the signed Merkle log
    in that same transaction). The station key lives at ``key_path`` (default ``<db dir>/keys/``).
    """

    def __init__(self, db_path: Path, image_dir: Path | None = None, key_path: Path | None = None,
                 min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> None:
        self.db_path = Path(db_path)
        self.image_dir = Path(image_dir) if image_dir else self.db_path.parent / "images"
        self.key_path = Path(key_path) if key_path else self.db_path.parent / "keys" / "station_ed25519.pem"
        self.min_free_bytes = min_free_bytes
        self._db: sqlite3.Connection | None = None
        self._evidence: EvidenceLog | None = None

    # -------------------------------------------------------------------------------- lifecycle
    def open(self) -> "StationStore":
        try:
            private_dir(self.db_path.parent)  # the data dir, when this creates it: 0700
            private_dir(self.image_dir, tighten=True)
            private_sqlite_files(self.db_path)  # station.db (and its -wal, -shm) 0600
            db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the station database {self.db_path}: {exc}") from None
        self._db = db
        self._migrate()
        self._evidence = EvidenceLog(StationKey(self.key_path))
        self._backfill_evidence()
        return self

    @property
    def evidence(self) -> EvidenceLog:
        if self._evidence is None:
            raise StoreError("station store is not open")
        return self._evidence

    def _backfill_evidence(self) -> None:
        """Records written before the evidence log existed (schema 1) join the log, oldest first."""
        missing = [r[0] for r in self.db.execute(
            "SELECT record_id FROM inspections WHERE record_id NOT IN (SELECT record_id FROM evidence_leaves) "
            "ORDER BY seq")]
        if missing:
            self._write(lambda: None, missing, f"cannot add {len(missing)} earlier records to the evidence log")

    def _write(self, body, record_ids: list[str], what: str) -> None:
        """One IMMEDIATE transaction: ``body()``, then outbox rows and log leaves for ``record_ids``, then the
        signed head. All or nothing: a crash or an error leaves no record without its outbox row and leaf."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            body()
            now = utc_now()
            self.db.executemany("INSERT OR IGNORE INTO outbox(record_id, created_at) VALUES (?,?)",
                                [(rid, now) for rid in record_ids])
            self.evidence.append_in_tx(self.db, record_ids, now)
            self.db.execute("COMMIT")
        except (sqlite3.Error, EvidenceError, OSError) as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self.evidence.invalidate()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{what}: {exc}{_disk_full_hint(exc)}") from None

    def _closed_error(self) -> Exception:
        return StoreError("station store is not open")

    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version()
        if current > len(MIGRATIONS):
            raise StoreError(f"{self.db_path} has schema version {current}, newer than this station "
                             f"({len(MIGRATIONS)}): upgrade the station software")
        for version in range(current, len(MIGRATIONS)):
            try:
                self.db.execute("BEGIN IMMEDIATE")
                for stmt in _split_sql(MIGRATIONS[version]):
                    self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version = {version + 1}")
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                self.db.execute("ROLLBACK")
                raise StoreError(f"migration {version + 1} of {self.db_path} failed: {exc}") from None

    # -------------------------------------------------------------------------------- images
    def put_image(self, image: np.ndarray) -> StoredImage:
        """Store a frame (PNG, lossless) by content hash; atomic and idempotent."""
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise StoreError("could not encode image for storage")
        data = buf.tobytes()
        digest = hashlib.sha256(data).hexdigest()
        rel = Path(digest[:2]) / f"{digest}.png"
        path = self.image_dir / rel
        if path.exists():
            clear_group_other(path)  # an image stored by an older station (0644) is made private
        else:
            self.check_free_space(len(data))
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            try:
                private_dir(path.parent)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
                with os.fdopen(fd, "wb") as fh:
                    os.fchmod(fh.fileno(), PRIVATE_FILE_MODE)  # 0600 whatever the umask
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
                _fsync_dir(path.parent)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise StoreError(f"cannot write image {path}: {exc.strerror}{_disk_full_hint(exc)}") from None
        try:
            self.db.execute(
                "INSERT OR IGNORE INTO images(sha256, relpath, bytes, width, height, created_at) "
                "VALUES (?,?,?,?,?,?)", (digest, str(rel), len(data), image.shape[1], image.shape[0], utc_now()))
            # An image pruned earlier and captured again is on disk again.
            self.db.execute("UPDATE images SET pruned_at = NULL WHERE sha256 = ? AND pruned_at IS NOT NULL",
                            (digest,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record image {digest}: {exc}{_disk_full_hint(exc)}") from None
        return StoredImage(digest, path)

    def check_free_space(self, need_bytes: int = 0) -> None:
        """Refuse to write when the data disk has less than ``min_free_bytes`` (plus this write) free."""
        if self.min_free_bytes <= 0:
            return
        try:
            free = shutil.disk_usage(self.image_dir).free
        except OSError:
            return
        if free - need_bytes < self.min_free_bytes:
            raise StoreError(f"disk full: {free // (1024 * 1024)} MiB free on {self.image_dir}, the station keeps "
                             f"{self.min_free_bytes // (1024 * 1024)} MiB in reserve; free space, lower the image "
                             f"budget (synced images are pruned first) or move data_dir. Nothing was written.")

    def image_path(self, sha256: str) -> Path:
        row = self.db.execute("SELECT relpath FROM images WHERE sha256=?", (sha256,)).fetchone()
        if row is None:
            raise StoreError(f"image {sha256} is not in the store")
        return self.image_dir / row[0]

    # -------------------------------------------------------------------------------- records
    def append(self, record: InspectionRecord) -> None:
        """Write the record, queue it in the outbox and seal it in the evidence log: one transaction."""
        self.append_many([record])

    def append_many(self, records: list[InspectionRecord]) -> None:
        """Like ``append`` for several records in one transaction (imports, benchmarks)."""
        if not records:
            return
        for record in records:  # before the transaction: a record the platform would refuse is never written
            _check_limits({**request_values(record.request), "operator": record.operator,
                           "override_reason": record.override_reason})
            for view, _ in record.image_hashes:
                _check_limits({"view": view})

        def body() -> None:
            for record in records:
                self._insert_record(record)

        what = (f"cannot record inspection {records[0].record_id}" if len(records) == 1
                else f"cannot record {len(records)} inspections")
        self._write(body, [r.record_id for r in records], what)

    def _insert_record(self, record: InspectionRecord) -> None:
        d = record.decision
        r = record.request
        self.db.execute(
            """INSERT INTO inspections(record_id, created_at, station_id, order_id, sku, unit_code, reason,
               channel, streamer, brand, carrier, grade, disposition, review, lane, confidence, model_version,
               rules_fired, decision_json, findings_json, timings_json, operator, overrides, override_reason)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (record.record_id, record.created_at, record.station_id, r.order_id, r.sku, r.unit_code,
             r.reason.value, r.channel, r.streamer, r.brand, r.carrier, d.grade.value, d.disposition.value,
             int(d.review), record.lane, d.confidence, record.model_version, " ".join(d.rules_fired),
             json.dumps(decision_json(record), ensure_ascii=False), json.dumps([f.to_json() for f in record.findings]),
             json.dumps(record.timings_ms), record.operator, record.overrides, record.override_reason),
        )
        for view, sha in record.image_hashes:
            self.db.execute("INSERT OR IGNORE INTO inspection_images(record_id, view, sha256) VALUES (?,?,?)",
                            (record.record_id, view, sha))

    def override(self, record_id: str, operator: str, reason: str, grade: Grade | None = None,
                 disposition: Disposition | None = None, lane: int | None = None) -> str:
        """Append an override row pointing at ``record_id``; the original stays as it was."""
        if not operator or not reason:
            raise StoreError("an override needs who (operator) and why (reason)")
        _check_limits({"operator": operator, "override_reason": reason})
        row = self.get(record_id)
        if row is None:
            raise StoreError(f"record {record_id} not found")
        decision = json.loads(row["decision_json"])
        decision["rules_fired"] = list(decision.get("rules_fired", [])) + ["OVERRIDE"]
        if grade is not None:
            decision["grade"] = grade.value
        if disposition is not None:
            decision["disposition"] = disposition.value
        decision["review"] = False
        new_id = new_record_id()
        now = utc_now()

        def body() -> None:
            self.db.execute(
                """INSERT INTO inspections(record_id, created_at, station_id, order_id, sku, unit_code, reason,
                   channel, streamer, brand, carrier, grade, disposition, review, lane, confidence, model_version,
                   rules_fired, decision_json, findings_json, timings_json, operator, overrides, override_reason)
                   SELECT ?, ?, station_id, order_id, sku, unit_code, reason, channel, streamer, brand, carrier,
                   ?, ?, 0, ?, confidence, model_version, ?, ?, findings_json, '{}', ?, record_id, ?
                   FROM inspections WHERE record_id = ?""",
                (new_id, now, decision["grade"], decision["disposition"],
                 lane if lane is not None else row["lane"], " ".join(decision["rules_fired"]),
                 json.dumps(decision, ensure_ascii=False), operator, reason, record_id),
            )

        self._write(body, [new_id], f"cannot record override of {record_id}")
        return new_id

    def override_boxes(self, record_id: str, operator: str, reason: str, boxes: Iterable[Mapping],
                       classes: Sequence[str] = DETECTOR_CLASSES) -> str:
        """Append a box-correction override: ``boxes`` (each ``{"view", "class", "box_xyxy"}``) is the complete
        corrected set of detector boxes for every view of the record (a view without boxes is clean), checked
        by ``checked_boxes`` against the record's views and ``classes``. It is kept in the override's
        ``decision_json["boxes"]`` and replaces the detector findings in its findings_json; grade and
        disposition stay as they were (change them with ``override``)."""
        if not operator or not reason:
            raise StoreError("a box correction needs who (operator) and why (reason)")
        _check_limits({"operator": operator, "override_reason": reason})
        row = self.get(record_id)
        if row is None:
            raise StoreError(f"record {record_id} not found")
        boxes = checked_boxes(boxes, (v for v, _ in self.images_of(record_id)), classes)
        decision = json.loads(row["decision_json"])
        decision["rules_fired"] = list(decision.get("rules_fired", [])) + ["OVERRIDE-BOXES"]
        decision["boxes"] = [{"view": str(b["view"]), "class": str(b["class"]),
                              "box_xyxy": [round(float(v), 1) for v in b["box_xyxy"]]} for b in boxes]
        findings = [f for f in json.loads(row["findings_json"]) if f.get("source") != "detector"]
        findings += [{"kind": b["class"], "score": 1.0, "source": "manual", "view": b["view"],
                      "box_xyxy": b["box_xyxy"]} for b in decision["boxes"]]
        new_id = new_record_id()

        def body() -> None:
            self.db.execute(
                """INSERT INTO inspections(record_id, created_at, station_id, order_id, sku, unit_code, reason,
                   channel, streamer, brand, carrier, grade, disposition, review, lane, confidence, model_version,
                   rules_fired, decision_json, findings_json, timings_json, operator, overrides, override_reason)
                   SELECT ?, ?, station_id, order_id, sku, unit_code, reason, channel, streamer, brand, carrier,
                   grade, disposition, review, lane, confidence, model_version, ?, ?, ?, '{}', ?, record_id, ?
                   FROM inspections WHERE record_id = ?""",
                (new_id, utc_now(), " ".join(decision["rules_fired"]), json.dumps(decision, ensure_ascii=False),
                 json.dumps(findings), operator, reason, record_id),
            )

        self._write(body, [new_id], f"cannot record box correction of {record_id}")
        return new_id

    def get(self, record_id: str) -> sqlite3.Row | None:
        cur = self.db.execute("SELECT * FROM inspections WHERE record_id=?", (record_id,))
        cur.row_factory = sqlite3.Row
        return cur.fetchone()

    def unit_seen_before(self, unit_code: str | None, excluding_order: str | None = None) -> bool:
        if not unit_code:
            return False
        row = self.db.execute(
            "SELECT 1 FROM inspections WHERE unit_code=? AND overrides IS NULL AND order_id IS NOT ? LIMIT 1",
            (unit_code, excluding_order),
        ).fetchone()
        return row is not None

    def rows(self, where: str = "", params: tuple = ()) -> Iterator[dict]:
        cur = self.db.execute(f"SELECT * FROM inspections {where} ORDER BY seq", params)
        cur.row_factory = sqlite3.Row
        for row in cur:
            out = dict(row)
            out["images"] = [
                {"view": v, "sha256": s}
                for v, s in self.db.execute(
                    "SELECT view, sha256 FROM inspection_images WHERE record_id=? ORDER BY rowid", (row["record_id"],))
            ]
            yield out

    def images_of(self, record_id: str) -> list[tuple[str, str]]:
        """(view, sha256) of a record's images. An override row has none of its own (it points at the row it
        overrides), so the chain is followed back to the inspection that captured them."""
        seen: set[str] = set()
        while record_id and record_id not in seen:
            seen.add(record_id)
            images = [(v, s) for v, s in self.db.execute(
                "SELECT view, sha256 FROM inspection_images WHERE record_id=? ORDER BY rowid", (record_id,))]
            if images:
                return images
            parent = self.db.execute("SELECT overrides FROM inspections WHERE record_id=?", (record_id,)).fetchone()
            record_id = parent[0] if parent else None
        return []

    def history(self, unit_code: str) -> list[dict]:
        return list(self.rows("WHERE unit_code = ?", (unit_code,)))

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM inspections").fetchone()[0])

    # -------------------------------------------------------------------------------- outbox (sync)
    def pending_count(self) -> int:
        """Records waiting for the platform (dead letters not counted: see ``dead_letter_count``)."""
        return int(self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL").fetchone()[0])

    def dead_letter_count(self) -> int:
        return int(self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NOT NULL").fetchone()[0])

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Records the platform refused for good, oldest first."""
        rows = self.db.execute(
            """SELECT o.record_id, i.order_id, o.dead_status, o.dead_reason, o.dead_at, o.dead_attempts
               FROM outbox o JOIN inspections i ON i.record_id = o.record_id
               WHERE o.sent_at IS NULL AND o.dead_at IS NOT NULL ORDER BY o.seq LIMIT ?""",
            (-1 if limit is None else int(limit),)).fetchall()
        return [DeadLetter(rid, order, status, reason or "", at, int(n)) for rid, order, status, reason, at, n in rows]

    def mark_dead(self, refusals: Sequence[tuple[str, int | None, str]]) -> None:
        """Set aside records the platform refused for good: ``(record_id, http_status, reason)`` each. Later
        batches skip them; the rest of the outbox flows on."""
        if not refusals:
            return
        now = utc_now()
        with self._tx(f"set aside {len(refusals)} refused record(s)"):
            self.db.executemany(
                "UPDATE outbox SET dead_at = ?, dead_status = ?, dead_reason = ?, dead_attempts = dead_attempts + 1 "
                "WHERE record_id = ? AND sent_at IS NULL",
                [(now, status, str(reason)[:2000], rid) for rid, status, reason in refusals])

    def retry_dead(self, record_ids: Sequence[str] | None = None) -> int:
        """Queue dead letters again (all, or those named), after the platform or the data was fixed; returns how
        many. The status and reason stay until the next attempt answers."""
        with self._tx("queue refused records again"):
            if record_ids is None:
                cur = self.db.execute("UPDATE outbox SET dead_at = NULL WHERE sent_at IS NULL AND dead_at IS NOT NULL")
                return cur.rowcount
            n = 0
            for rid in record_ids:
                n += self.db.execute("UPDATE outbox SET dead_at = NULL WHERE record_id = ? AND sent_at IS NULL "
                                     "AND dead_at IS NOT NULL", (rid,)).rowcount
            return n

    def outbox_batch(self, limit: int) -> list[dict]:
        """The oldest unsent records, each as the platform's record payload (row, images, log leaf)."""
        cur = self.db.execute(
            """SELECT i.*, l.idx AS leaf_index, l.leaf_hash AS leaf_hash FROM outbox o
               JOIN inspections i ON i.record_id = o.record_id
               LEFT JOIN evidence_leaves l ON l.record_id = o.record_id
               WHERE o.sent_at IS NULL AND o.dead_at IS NULL ORDER BY o.seq LIMIT ?""", (limit,))
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            rec = dict(zip(names, row))
            rec.pop("seq", None)
            rec["images"] = [{"view": v, "sha256": sh} for v, sh in self.db.execute(
                "SELECT view, sha256 FROM inspection_images WHERE record_id=? ORDER BY rowid", (rec["record_id"],))]
            out.append(rec)
        return out

    def mark_sent(self, record_ids: list[str]) -> None:
        if not record_ids:
            return
        now = utc_now()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("UPDATE outbox SET sent_at = ?, dead_at = NULL WHERE record_id = ? AND sent_at IS NULL",
                                [(now, rid) for rid in record_ids])
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise StoreError(f"cannot mark {len(record_ids)} records as sent: {exc}{_disk_full_hint(exc)}") from None

    def images_to_upload(self, shas: list[str]) -> list[tuple[str, Path]]:
        out = []
        for sha in dict.fromkeys(shas):
            row = self.db.execute("SELECT relpath FROM images WHERE sha256=? AND uploaded_at IS NULL "
                                  "AND pruned_at IS NULL", (sha,)).fetchone()
            if row is not None:
                out.append((sha, self.image_dir / row[0]))
        return out

    def mark_images_uploaded(self, shas: list[str]) -> None:
        if not shas:
            return
        now = utc_now()
        with self._tx("mark images uploaded"):
            self.db.executemany("UPDATE images SET uploaded_at = ? WHERE sha256 = ? AND uploaded_at IS NULL",
                                [(now, sha) for sha in shas])

    def get_state(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM sync_state WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, values: dict[str, str | None]) -> None:
        with self._tx("save sync state"):
            for k, v in values.items():
                if v is None:
                    self.db.execute("DELETE FROM sync_state WHERE key=?", (k,))
                else:
                    self.db.execute("INSERT INTO sync_state(key, value) VALUES (?,?) "
                                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (k, v))

    def save_pulled(self, table: str, key_field: str, items: list[dict]) -> int:
        """Store RMAs (``rmas``) or catalogue updates (``catalogue_updates``) pulled from the platform."""
        if table not in ("rmas", "catalogue_updates"):
            raise ValueError(table)
        col = "order_id" if table == "rmas" else "sku"
        with self._tx(f"save pulled {table}"):
            for item in items:
                self.db.execute(f"INSERT INTO {table}({col}, payload, server_seq) VALUES (?,?,?) "
                                f"ON CONFLICT({col}) DO UPDATE SET payload=excluded.payload, "
                                f"server_seq=excluded.server_seq",
                                (item[key_field], json.dumps(item, ensure_ascii=False), int(item["seq"])))
        return len(items)

    def pulled_max_seq(self, table: str) -> int:
        if table not in ("rmas", "catalogue_updates"):
            raise ValueError(table)
        return int(self.db.execute(f"SELECT COALESCE(MAX(server_seq), 0) FROM {table}").fetchone()[0])

    def _tx(self, what: str):
        store = self

        class _Tx:
            def __enter__(self_inner):
                try:
                    store.db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as e:  # busy, disk I/O, read-only: the same one-line error as a failed write
                    raise StoreError(f"cannot {what}: {e}{_disk_full_hint(e)}") from None

            def __exit__(self_inner, typ, exc, tb):
                if typ is None:
                    try:
                        store.db.execute("COMMIT")
                        return False
                    except sqlite3.Error as e:
                        exc = e
                if store.db.in_transaction:
                    store.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot {what}: {exc}{_disk_full_hint(exc)}") from None
                return False

        return _Tx()

    # -------------------------------------------------------------------------------- evidence
    def latest_head(self) -> SignedTreeHead | None:
        from station.evidence import latest_head

        return latest_head(self.db)

    def public_key_pem(self) -> bytes:
        try:
            return self.evidence.key.public_pem()
        except EvidenceError as exc:
            raise StoreError(str(exc)) from None

    def verify(self, public_key=None):
        """Re-hash every record and image and check the log and every signed head (see evidence.verify_store)."""
        from station.evidence import verify_store

        try:
            key = public_key if public_key is not None else self.evidence.key.public
            return verify_store(self.db, self.image_dir, key)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the station database {self.db_path} is damaged: {exc}") from None

    # -------------------------------------------------------------------------------- retention
    def image_bytes(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM images WHERE pruned_at IS NULL").fetchone()[0])

    def enforce_image_budget(self, budget_bytes: int) -> PruneReport:
        """Delete image files, oldest first, until the images fit ``budget_bytes``. Only images already on the
        platform whose every record has been sent are pruned; an unsynced image is never deleted. The row and
        its hash stay (the evidence log still proves what the image was; the platform holds the bytes)."""
        total = self.image_bytes()
        pruned = freed = 0
        if total > budget_bytes:
            candidates = self.db.execute(
                """SELECT sha256, relpath, bytes FROM images im
                   WHERE pruned_at IS NULL AND uploaded_at IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM inspection_images ii JOIN outbox o ON o.record_id = ii.record_id
                                   WHERE ii.sha256 = im.sha256 AND o.sent_at IS NULL)
                   ORDER BY created_at, sha256""").fetchall()
            for sha, rel, size in candidates:
                if total <= budget_bytes:
                    break
                with self._tx(f"prune image {sha}"):
                    self.db.execute("UPDATE images SET pruned_at = ? WHERE sha256 = ?", (utc_now(), sha))
                (self.image_dir / rel).unlink(missing_ok=True)
                total -= size
                freed += size
                pruned += 1
        unsynced = int(self.db.execute(
            "SELECT COALESCE(SUM(bytes), 0) FROM images WHERE pruned_at IS NULL AND uploaded_at IS NULL").fetchone()[0])
        return PruneReport(pruned, freed, total, budget_bytes, unsynced)


EXPORT_COLUMNS = ("record_id", "created_at", "station_id", "order_id", "sku", "unit_code", "reason", "channel",
                  "streamer", "brand", "carrier", "grade", "disposition", "review", "lane", "confidence",
                  "model_version", "rules_fired", "operator", "overrides", "override_reason")


# OWASP "CSV injection": a spreadsheet runs a cell that starts with one of these as a formula (=cmd|' /C calc'!A0).
# Catalogue and RMA fields come from outside the station, so every text cell that starts so is prefixed with a
# single quote, which spreadsheets show as text. Numbers (lane, confidence) are written as numbers.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """``value`` as a CSV cell a spreadsheet will not evaluate (text only; other values unchanged)."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


def export_rows(rows: Iterator[dict], fmt: str, out: io.TextIOBase) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=[*EXPORT_COLUMNS, "liability", "findings"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            decision = json.loads(row["decision_json"])
            liability = ";".join(f"{s['party']}={s['share']}" for s in decision.get("liability", []))
            findings = ";".join(f["kind"] for f in json.loads(row["findings_json"]))
            cells = {**row, "liability": liability, "findings": findings}
            writer.writerow({k: csv_safe(cells.get(k)) for k in writer.fieldnames})
            n += 1
    elif fmt == "jsonl":
        for row in rows:
            obj = {k: row[k] for k in EXPORT_COLUMNS}
            obj["review"] = bool(obj["review"])
            obj["decision"] = json.loads(row["decision_json"])
            obj["findings"] = json.loads(row["findings_json"])
            obj["timings_ms"] = json.loads(row["timings_json"])
            obj["images"] = row["images"]
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}: use csv or jsonl")
    return n


def write_export_file(rows: Iterator[dict], fmt: str, path: Path) -> int:
    """Export to ``path`` atomically: a temporary file beside it, fsynced, then renamed. A full disk (ENOSPC,
    EDQUOT, EFBIG), a read-only file system or any other write error raises StoreError with one line, and no
    half-written file is left (neither the temporary nor a truncated ``path``; an earlier ``path`` stays)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            n = export_rows(rows, fmt, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}{_disk_full_hint(exc)}: "
                         f"pass --out FILE on a disk with space that you may write to") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            buf = []
    if "\n".join(buf).strip():
        statements.append("\n".join(buf).strip())
    return statements


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
