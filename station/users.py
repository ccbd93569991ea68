"""Users, roles and what each may do, enforced here (not only by hiding buttons in the UI).

Roles: ``inspector`` inspects and may override items that are *not* flagged for review; ``supervisor``
also approves or changes flagged items (the review queue); ``admin`` also manages users.

PINs are stored hashed (scrypt, per-user random salt) in ``users.db`` beside the station database; the
table is created by this module (``CREATE TABLE IF NOT EXISTS``), not by the records migrations. Every
override goes through :func:`record_override` / :func:`approve`, which check the role and write the
authenticated user's name as the override's operator.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Iterable, Mapping

from station.dbhandle import SqliteHandle, private_dir, private_sqlite_files
from station.domain import DETECTOR_CLASSES, UNCERTAIN_DEFECT, Disposition, Grade, lane_for
from station.records import StationStore, StoreError, utc_now


class Role(StrEnum):
    INSPECTOR = "inspector"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


def parse_role(value: Role | str) -> Role:
    """A role by name, or ValueError naming the valid ones."""
    try:
        return Role(value)
    except ValueError:
        raise ValueError(f"unknown role {value!r}: use one of {', '.join(r.value for r in Role)}") from None


class Permission(StrEnum):
    INSPECT = "inspect"
    OVERRIDE = "override"  # change the decision of an item that is not flagged
    APPROVE_FLAGGED = "approve_flagged"  # approve or change an item flagged for review
    REVIEW_QUEUE = "review_queue"
    DASHBOARD = "dashboard"
    MANAGE_USERS = "manage_users"
    CALIBRATE = "calibrate"  # run the calibration wizard and store calibration profiles
    EDIT_SETTINGS = "edit_settings"  # read and change the station's config file
    CORRECT_BOXES = "correct_boxes"  # move, resize, relabel, add or delete detector boxes (an override record)


_INSPECTOR = frozenset({Permission.INSPECT, Permission.OVERRIDE, Permission.DASHBOARD})
_SUPERVISOR = _INSPECTOR | {Permission.APPROVE_FLAGGED, Permission.REVIEW_QUEUE, Permission.CALIBRATE,
                            Permission.CORRECT_BOXES}
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.INSPECTOR: _INSPECTOR,
    Role.SUPERVISOR: frozenset(_SUPERVISOR),
    Role.ADMIN: frozenset(_SUPERVISOR | {Permission.MANAGE_USERS, Permission.EDIT_SETTINGS}),
}

# Why an inspector or supervisor changed what the station proposed. Stored as "<code>: <comment>".
OVERRIDE_REASONS: tuple[str, ...] = (
    "missed_defect", "false_defect", "wrong_grade", "wrong_disposition", "customer_evidence", "supervisor_approval",
    "other",
)

# Why a supervisor corrected the detector's boxes. Stored like override reasons: "<code>: <comment>".
BOX_REASONS: tuple[str, ...] = ("missed_defect", "false_defect", "wrong_class", "box_position", "other")

PIN_PATTERN = re.compile(r"^[0-9]{4,12}$")  # 12 digits: ~10^12 guesses, not 10^4, offline
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MAX_FAILED_LOGINS = 5
LOCKOUT_SECONDS = 5 * 60  # after MAX_FAILED_LOGINS wrong PINs in a row; kept in users.db (a restart keeps it)
# scrypt cost: about 16 MiB and a few tens of ms per check; stored with the hash so it can be raised later.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

# Demo users, created only when a station has no users at all (first start on built-in defaults).
DEMO_USERS: tuple[tuple[str, Role, str], ...] = (
    ("inspector", Role.INSPECTOR, "1111"),
    ("supervisor", Role.SUPERVISOR, "2222"),
    ("admin", Role.ADMIN, "9999"),
)


class AuthError(ValueError):
    """Login refused: unknown user, wrong PIN, locked or inactive account."""


class AccountLocked(AuthError):
    """Login refused without checking the PIN: too many wrong PINs in a row; says until when."""

    def __init__(self, username: str, until: dt.datetime) -> None:
        self.username = username
        self.until = until
        super().__init__(f"account {username!r} is locked after {MAX_FAILED_LOGINS} wrong PINs in a row until "
                         f"{until.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC: try again then, or ask an "
                         f"admin to unlock it (`station users unlock {username}`)")

    def __str__(self) -> str:
        return str(self.args[0])


def _parse_until(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        until = dt.datetime.fromisoformat(value)
    except ValueError:
        return None  # unreadable: not a lock (the next wrong PINs set a fresh one)
    return until if until.tzinfo else until.replace(tzinfo=dt.timezone.utc)


class PermissionDenied(PermissionError):
    """The user's role does not allow this action."""


class StaleRecord(StoreError):
    """The record was already overridden (someone else got there first): reload and decide on the latest."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: Role
    display_name: str = ""

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


def require(user: User | None, permission: Permission, action: str) -> User:
    if user is None:
        raise PermissionDenied(f"{action}: log in first")
    if not user.can(permission):
        raise PermissionDenied(f"{action}: role {user.role.value} may not do this ({permission.value} needed)")
    return user


# ------------------------------------------------------------------------------------------- PIN hashing


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# ------------------------------------------------------------------------------------------- user store

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS station_users (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        display_name TEXT NOT NULL DEFAULT '',
        pin_hash TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until TEXT,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS station_user_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        username TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
)


class UserStore(SqliteHandle):
    """Station users in their own SQLite file (default ``<data_dir>/users.db``). Opened with ``open()``."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self._db: sqlite3.Connection | None = None

    def open(self) -> "UserStore":
        try:
            private_dir(self.db_path.parent)  # the data dir, when this creates it: 0700
            private_sqlite_files(self.db_path)  # users.db (and its -wal, -shm) 0600
            db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            for stmt in _SCHEMA:
                db.execute(stmt)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the user database {self.db_path}: {exc}") from None
        self._db = db
        return self

    def _closed_error(self) -> Exception:
        return StoreError("user store is not open")

    def _event(self, username: str, event: str, detail: str = "") -> None:
        self.db.execute("INSERT INTO station_user_events(at, username, event, detail) VALUES (?,?,?,?)",
                        (utc_now(), username, event, detail))

    def is_empty(self) -> bool:
        return self.db.execute("SELECT COUNT(*) FROM station_users").fetchone()[0] == 0

    def add(self, username: str, role: Role | str, pin: str, display_name: str = "",
            by: User | None = None) -> User:
        """Add a user. ``by`` must be an admin, except for the very first user of a station."""
        if not self.is_empty():
            require(by, Permission.MANAGE_USERS, "add a user")
        if not USERNAME_PATTERN.match(username):
            raise ValueError(f"user name {username!r}: use 1-32 letters, digits, '_', '.' or '-'")
        if not PIN_PATTERN.match(pin):
            raise ValueError("PIN must be 4 to 12 digits")
        role = parse_role(role)
        try:
            self.db.execute(
                "INSERT INTO station_users(username, role, display_name, pin_hash, created_at) VALUES (?,?,?,?,?)",
                (username, role.value, display_name, hash_pin(pin), utc_now()))
        except sqlite3.IntegrityError:
            raise ValueError(f"user {username!r} already exists") from None
        self._event(username, "added", f"role={role.value} by={by.username if by else '-'}")
        return User(username, role, display_name)

    def set_pin(self, username: str, pin: str, by: User) -> None:
        if by.username != username:
            require(by, Permission.MANAGE_USERS, "change another user's PIN")
        if not PIN_PATTERN.match(pin):
            raise ValueError("PIN must be 4 to 12 digits")
        cur = self.db.execute("UPDATE station_users SET pin_hash=?, failed_logins=0, locked_until=NULL "
                              "WHERE username=?", (hash_pin(pin), username))
        if cur.rowcount == 0:
            raise ValueError(f"no user {username!r}")
        self._event(username, "pin_changed", f"by={by.username}")

    def set_active(self, username: str, active: bool, by: User) -> None:
        require(by, Permission.MANAGE_USERS, "activate or deactivate a user")
        self.db.execute("UPDATE station_users SET active=? WHERE username=?", (int(active), username))
        self._event(username, "activated" if active else "deactivated", f"by={by.username}")

    def unlock(self, username: str, by: User) -> None:
        """Lift a lockout after wrong PINs (admin); the count of wrong PINs starts again from zero."""
        require(by, Permission.MANAGE_USERS, "unlock a user")
        cur = self.db.execute("UPDATE station_users SET failed_logins=0, locked_until=NULL WHERE username=?",
                              (username,))
        if cur.rowcount == 0:
            raise ValueError(f"no user {username!r}")
        self._event(username, "unlocked", f"by={by.username}")

    def locked_until(self, username: str, now: dt.datetime | None = None) -> dt.datetime | None:
        """When the user's lockout ends (UTC), or None when the user is not locked out."""
        now = now or dt.datetime.now(dt.timezone.utc)
        row = self.db.execute("SELECT locked_until FROM station_users WHERE username=?", (username,)).fetchone()
        until = _parse_until(row[0]) if row else None
        return until if until is not None and until > now else None

    def users(self) -> list[User]:
        return [User(u, Role(r), d) for u, r, d in self.db.execute(
            "SELECT username, role, display_name FROM station_users WHERE active=1 ORDER BY username")]

    def authenticate(self, username: str, pin: str, now: dt.datetime | None = None) -> User:
        now = now or dt.datetime.now(dt.timezone.utc)
        row = self.db.execute("SELECT role, display_name, pin_hash, active, failed_logins, locked_until "
                              "FROM station_users WHERE username=?", (username,)).fetchone()
        if row is None or not row[3]:
            raise AuthError("unknown user or wrong PIN")
        role, display, pin_hash, _, failed, locked_until = row
        until = _parse_until(locked_until)
        if until is not None and until > now:
            raise AccountLocked(username, until)
        if not verify_pin(pin, pin_hash):
            failed += 1
            lock = now + dt.timedelta(seconds=LOCKOUT_SECONDS) if failed >= MAX_FAILED_LOGINS else None
            self.db.execute("UPDATE station_users SET failed_logins=?, locked_until=? WHERE username=?",
                            (0 if lock else failed, lock.isoformat() if lock else None, username))
            self._event(username, "login_failed")
            if lock is not None:
                self._event(username, "locked", f"until={lock.isoformat()}")
                raise AuthError(f"unknown user or wrong PIN; {AccountLocked(username, lock)}")
            raise AuthError("unknown user or wrong PIN")
        self.db.execute("UPDATE station_users SET failed_logins=0, locked_until=NULL WHERE username=?", (username,))
        self._event(username, "login")
        return User(username, Role(role), display)

    def seed_demo_users(self) -> list[tuple[str, Role, str]]:
        """Create the demo users when the station has none; returns what it created (empty otherwise)."""
        if not self.is_empty():
            return []
        admin_name, admin_role, admin_pin = DEMO_USERS[-1]
        admin = self.add(admin_name, admin_role, admin_pin)
        for name, role, pin in DEMO_USERS[:-1]:
            self.add(name, role, pin, by=admin)
        return list(DEMO_USERS)


# ------------------------------------------------------------------------------------------- review actions


@dataclass(frozen=True, slots=True)
class QueueItem:
    """An item waiting for a supervisor: the latest record of its order is flagged and not overridden."""

    record_id: str
    created_at: str
    age_hours: float
    order_id: str
    sku: str
    unit_code: str | None
    reason: str
    brand: str | None
    streamer: str | None
    grade: str
    disposition: str
    proposed_disposition: str
    rules_fired: tuple[str, ...]
    reasons: tuple[str, ...]


def _latest_row(store: StationStore, order_id: str) -> sqlite3.Row | None:
    cur = store.db.execute("SELECT * FROM inspections WHERE order_id=? ORDER BY seq DESC LIMIT 1", (order_id,))
    cur.row_factory = sqlite3.Row
    return cur.fetchone()


def is_flagged(row: Mapping) -> bool:
    return bool(row["review"])


def _current(store: StationStore, record_id: str) -> sqlite3.Row:
    row = store.get(record_id)
    if row is None:
        raise StoreError(f"record {record_id} not found")
    latest = _latest_row(store, row["order_id"])
    if latest is not None and latest["record_id"] != record_id:
        who = latest["operator"] or "the station"
        raise StaleRecord(f"order {row['order_id']} was decided again since (by {who}): reload and decide on "
                          f"the latest record")
    return row


def record_override(store: StationStore, user: User, record_id: str, reason_code: str, comment: str = "",
                    grade: Grade | None = None, disposition: Disposition | None = None,
                    lane: int | None = None) -> str:
    """Change a decision. Inspectors may change unflagged items only; flagged ones need a supervisor."""
    require(user, Permission.OVERRIDE, "override a decision")
    if reason_code not in OVERRIDE_REASONS:
        raise ValueError(f"unknown override reason {reason_code!r}: use one of {', '.join(OVERRIDE_REASONS)}")
    if reason_code == "other" and not comment.strip():
        raise ValueError("reason 'other' needs a comment that says why")
    row = _current(store, record_id)
    if is_flagged(row):
        require(user, Permission.APPROVE_FLAGGED, "change an item flagged for review")
    if disposition == Disposition.MANUAL_REVIEW:
        raise ValueError("an override decides: choose a disposition other than manual_review")
    reason = reason_code + (f": {comment.strip()}" if comment.strip() else "")
    return store.override(record_id, user.username, f"[{user.role.value}] {reason}", grade, disposition, lane)


def approve(store: StationStore, user: User, record_id: str, lanes: Mapping[Disposition, int],
            comment: str = "") -> str:
    """Approve what the station proposed for a flagged item (supervisor). Writes an override row."""
    require(user, Permission.APPROVE_FLAGGED, "approve an item flagged for review")
    row = _current(store, record_id)
    if not is_flagged(row):
        raise ValueError(f"record {record_id} is not flagged for review: nothing to approve")
    decision = json.loads(row["decision_json"])
    proposed = Disposition(decision.get("proposed_disposition") or row["disposition"])
    if proposed == Disposition.MANUAL_REVIEW:
        raise ValueError("the station proposed no disposition for this item: change it instead of approving")
    reason = "supervisor_approval" + (f": {comment.strip()}" if comment.strip() else "")
    return store.override(record_id, user.username, f"[{user.role.value}] {reason}", Grade(row["grade"]),
                          proposed, lane_for(lanes, proposed))


def bulk_approve(store: StationStore, user: User, record_ids: Iterable[str], lanes: Mapping[Disposition, int],
                 comment: str = "") -> tuple[list[str], list[tuple[str, str]]]:
    """Approve each; returns (new override ids, [(record id, why it was skipped)])."""
    require(user, Permission.APPROVE_FLAGGED, "bulk-approve flagged items")
    done, skipped = [], []
    for rid in record_ids:
        try:
            done.append(approve(store, user, rid, lanes, comment))
        except (ValueError, StoreError) as exc:
            skipped.append((rid, str(exc)))
    return done, skipped


def review_queue(store: StationStore, user: User, reason: str | None = None, brand: str | None = None,
                 streamer: str | None = None, min_age_hours: float | None = None,
                 max_age_hours: float | None = None, now: dt.datetime | None = None) -> list[QueueItem]:
    """Flagged items, oldest first, filtered by return reason, brand, streamer and age."""
    require(user, Permission.REVIEW_QUEUE, "open the review queue")
    now = now or dt.datetime.now(dt.timezone.utc)
    where, params = ["i.review = 1"], []
    for col, val in (("reason", reason), ("brand", brand), ("streamer", streamer)):
        if val:
            where.append(f"i.{col} = ?")
            params.append(val)
    cur = store.db.execute(
        f"""SELECT i.* FROM inspections i
            WHERE i.seq = (SELECT MAX(j.seq) FROM inspections j WHERE j.order_id = i.order_id)
            AND {' AND '.join(where)} ORDER BY i.seq""", params)
    cur.row_factory = sqlite3.Row
    out = []
    for row in cur:
        age = (now - dt.datetime.fromisoformat(row["created_at"])).total_seconds() / 3600
        if min_age_hours is not None and age < min_age_hours:
            continue
        if max_age_hours is not None and age > max_age_hours:
            continue
        d = json.loads(row["decision_json"])
        out.append(QueueItem(row["record_id"], row["created_at"], age, row["order_id"], row["sku"],
                             row["unit_code"], row["reason"], row["brand"], row["streamer"], row["grade"],
                             row["disposition"], d.get("proposed_disposition") or row["disposition"],
                             tuple(d.get("rules_fired", [])), tuple(d.get("reasons", []))))
    return out


def current_boxes(row: Mapping) -> list[dict]:
    """The detector boxes a record stands for, each ``{"view", "class", "box_xyxy"}``: its box correction
    (``decision_json["boxes"]``, carried on by later overrides) when there is one, else its detector findings."""
    decision = json.loads(row["decision_json"])
    if "boxes" in decision:
        return [{"view": b["view"], "class": b["class"], "box_xyxy": [float(v) for v in b["box_xyxy"]]}
                for b in decision["boxes"]]
    return [{"view": f["view"], "class": _box_class(f), "box_xyxy": [float(v) for v in f["box_xyxy"]]}
            for f in json.loads(row["findings_json"])
            if f.get("source") == "detector" and f.get("view") and "box_xyxy" in f]


def _box_class(finding: Mapping) -> str:
    """The detector class of a box finding: an uncertain one's class is the first word of its detail
    ("crack 0.41 below its calibrated 0.62"), so the supervisor corrects the box as the class it was."""
    if finding["kind"] == UNCERTAIN_DEFECT:
        name = str(finding.get("detail", "")).split(" ", 1)[0]
        if name in DETECTOR_CLASSES:
            return name
    return finding["kind"]


def correct_boxes(store: StationStore, user: User, record_id: str, reason_code: str, boxes: Iterable[Mapping],
                  comment: str = "", classes: Iterable[str] = DETECTOR_CLASSES) -> str:
    """Store a supervisor's box correction as an override record (``StationStore.override_boxes``); the record
    itself is never edited. ``boxes`` is the complete corrected set for every view of the record, in the
    stored images' pixel coordinates; ``classes`` are the detector's class names (the store checks every box and
    raises ``records.BoxError``, a ValueError). Returns the new record id."""
    require(user, Permission.CORRECT_BOXES, "correct detector boxes")
    if reason_code not in BOX_REASONS:
        raise ValueError(f"unknown box correction reason {reason_code!r}: use one of {', '.join(BOX_REASONS)}")
    if reason_code == "other" and not comment.strip():
        raise ValueError("reason 'other' needs a comment that says why")
    _current(store, record_id)  # a correction of an outdated record would silently drop the later decision
    reason = reason_code + (f": {comment.strip()}" if comment.strip() else "")
    return store.override_boxes(record_id, user.username, f"[{user.role.value}] {reason}", boxes, tuple(classes))
