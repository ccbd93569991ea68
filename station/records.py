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
import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from station.domain import Decision, Disposition, Finding, Grade, InspectionRecord, ReturnRequest

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
)


class StoreError(RuntimeError):
    """The station store could not be written or read; the message says what to do."""


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


class StationStore:
    """Opened explicitly with ``open()`` (no I/O in the constructor)."""

    def __init__(self, db_path: Path, image_dir: Path | None = None) -> None:
        self.db_path = Path(db_path)
        self.image_dir = Path(image_dir) if image_dir else self.db_path.parent / "images"
        self._db: sqlite3.Connection | None = None

    # -------------------------------------------------------------------------------- lifecycle
    def open(self) -> "StationStore":
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self.image_dir.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the station database {self.db_path}: {exc}") from None
        self._db = db
        self._migrate()
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "StationStore":
        return self.open() if self._db is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("station store is not open")
        return self._db

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
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
                _fsync_dir(path.parent)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                hint = " (disk full: free space or move data_dir)" if exc.errno == 28 else ""
                raise StoreError(f"cannot write image {path}: {exc.strerror}{hint}") from None
        self.db.execute(
            "INSERT OR IGNORE INTO images(sha256, relpath, bytes, width, height, created_at) VALUES (?,?,?,?,?,?)",
            (digest, str(rel), len(data), image.shape[1], image.shape[0], utc_now()),
        )
        return StoredImage(digest, path)

    def image_path(self, sha256: str) -> Path:
        row = self.db.execute("SELECT relpath FROM images WHERE sha256=?", (sha256,)).fetchone()
        if row is None:
            raise StoreError(f"image {sha256} is not in the store")
        return self.image_dir / row[0]

    # -------------------------------------------------------------------------------- records
    def append(self, record: InspectionRecord) -> None:
        d = record.decision
        r = record.request
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                """INSERT INTO inspections(record_id, created_at, station_id, order_id, sku, unit_code, reason,
                   channel, streamer, brand, carrier, grade, disposition, review, lane, confidence, model_version,
                   rules_fired, decision_json, findings_json, timings_json, operator, overrides, override_reason)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (record.record_id, record.created_at, record.station_id, r.order_id, r.sku, r.unit_code,
                 r.reason.value, r.channel, r.streamer, r.brand, r.carrier, d.grade.value, d.disposition.value,
                 int(d.review), record.lane, d.confidence, record.model_version, " ".join(d.rules_fired),
                 json.dumps(d.to_json(), ensure_ascii=False), json.dumps([f.to_json() for f in record.findings]),
                 json.dumps(record.timings_ms), record.operator, record.overrides, record.override_reason),
            )
            for view, sha in record.image_hashes:
                self.db.execute("INSERT OR IGNORE INTO inspection_images(record_id, view, sha256) VALUES (?,?,?)",
                                (record.record_id, view, sha))
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            hint = " (disk full: free space; nothing was half-written)" if "full" in str(exc) else ""
            raise StoreError(f"cannot record inspection {record.record_id}: {exc}{hint}") from None

    def override(self, record_id: str, operator: str, reason: str, grade: Grade | None = None,
                 disposition: Disposition | None = None, lane: int | None = None) -> str:
        """Append an override row pointing at ``record_id``; the original stays as it was."""
        if not operator or not reason:
            raise StoreError("an override needs who (operator) and why (reason)")
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
        try:
            self.db.execute("BEGIN IMMEDIATE")
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
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise StoreError(f"cannot record override of {record_id}: {exc}") from None
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

    def history(self, unit_code: str) -> list[dict]:
        return list(self.rows("WHERE unit_code = ?", (unit_code,)))

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM inspections").fetchone()[0])


EXPORT_COLUMNS = ("record_id", "created_at", "station_id", "order_id", "sku", "unit_code", "reason", "channel",
                  "streamer", "brand", "carrier", "grade", "disposition", "review", "lane", "confidence",
                  "model_version", "rules_fired", "operator", "overrides", "override_reason")


def export_rows(rows: Iterator[dict], fmt: str, out: io.TextIOBase) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=[*EXPORT_COLUMNS, "liability", "findings"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            decision = json.loads(row["decision_json"])
            liability = ";".join(f"{s['party']}={s['share']}" for s in decision.get("liability", []))
            findings = ";".join(f["kind"] for f in json.loads(row["findings_json"]))
            writer.writerow({**row, "liability": liability, "findings": findings})
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


def record_from_parts(request: ReturnRequest, findings: list[Finding], decision: Decision, lane: int,
                      image_hashes: list[tuple[str, str]], model_version: str, station_id: str,
                      timings_ms: dict[str, float], operator: str | None = None) -> InspectionRecord:
    return InspectionRecord(new_record_id(), request, tuple(findings), decision, lane,
                            tuple(image_hashes), model_version, station_id, utc_now(), timings_ms, operator)
