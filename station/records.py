"""Station records: SQLite (WAL) with schema migrations; images on disk by content hash.

Every inspection and every override is an append-only row: triggers refuse UPDATE and DELETE, and an
override is a new row that points to the record it overrides, with who, when and why. Images are
written atomically (temp file, fsync, rename) before the row that points to them.

The store is split by what it does: ``record_schema`` (migrations), ``record_types`` (errors, values, the clock),
``record_outbox`` (the outbox and sync state, mixed into :class:`StationStore`) and ``record_export`` (CSV and JSON
lines); this module keeps the store itself and re-exports their public names, so ``station.records`` stays the
one import path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np

from station.dbhandle import (PRIVATE_FILE_MODE, SqliteHandle, clear_group_other, private_dir,
                              private_sqlite_files)
from station.domain import DETECTOR_CLASSES, Disposition, Grade, InspectionRecord
from station.evidence import EvidenceError, EvidenceLog, StationKey, SignedTreeHead
from station.limits import LimitError, check_fields, request_values
from station.record_export import CSV_FORMULA_STARTS, EXPORT_COLUMNS, csv_safe, export_rows
from station.record_outbox import OutboxQueue
from station.record_schema import MIGRATIONS, split_sql
from station.record_types import (DEFAULT_MIN_FREE_BYTES, DISK_FULL_ERRNOS, READ_ONLY_ERRNOS, BoxError, DeadLetter,
                                  PruneReport, RecordLimitError, StoredImage, StoreError, checked_boxes,
                                  comparison_measurements, decision_json, disk_full_hint, fsync_dir,
                                  measurements_of, new_record_id, record_from_parts, utc_now)

# The migration splitter's name before the split (tests/test_records_store.py reads it).
_split_sql = split_sql

__all__ = [
    "MIGRATIONS", "split_sql", "DEFAULT_MIN_FREE_BYTES", "DISK_FULL_ERRNOS", "READ_ONLY_ERRNOS", "StoreError",
    "RecordLimitError", "DeadLetter", "BoxError", "checked_boxes", "utc_now", "new_record_id", "StoredImage",
    "PruneReport", "disk_full_hint", "fsync_dir", "comparison_measurements", "decision_json", "measurements_of",
    "record_from_parts", "OutboxQueue", "StationStore", "EXPORT_COLUMNS", "CSV_FORMULA_STARTS", "csv_safe",
    "export_rows", "write_export_file",
]


def _check_limits(values: Mapping[str, str | None]) -> None:
    try:
        check_fields(values)
    except LimitError as exc:
        raise RecordLimitError(exc.field, f"{exc}; nothing was written") from None


class StationStore(OutboxQueue, SqliteHandle):
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
            raise StoreError(f"{what}: {exc}{disk_full_hint(exc)}") from None

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
                for stmt in split_sql(MIGRATIONS[version]):
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
                fsync_dir(path.parent)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise StoreError(f"cannot write image {path}: {exc.strerror}{disk_full_hint(exc)}") from None
        try:
            self.db.execute(
                "INSERT OR IGNORE INTO images(sha256, relpath, bytes, width, height, created_at) "
                "VALUES (?,?,?,?,?,?)", (digest, str(rel), len(data), image.shape[1], image.shape[0], utc_now()))
            # An image pruned earlier and captured again is on disk again.
            self.db.execute("UPDATE images SET pruned_at = NULL WHERE sha256 = ? AND pruned_at IS NOT NULL",
                            (digest,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record image {digest}: {exc}{disk_full_hint(exc)}") from None
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
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}{disk_full_hint(exc)}: "
                         f"pass --out FILE on a disk with space that you may write to") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
