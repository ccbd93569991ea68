"""Disposition webhooks: every decision (and override) is posted to a configured URL, at least once, in order.

- An outbox in its own SQLite file (``<data_dir>/webhooks.db``): the event is queued with the bytes that will
  be sent, so every retry sends the same body; a receiver that is down never holds a lock on the records.
- Idempotency key per event: ``<record_id>:<event type>``, sent as ``Idempotency-Key``; queueing the same
  event twice is a no-op, and a receiver that keeps the keys it has seen takes each event once even when a
  reply was lost and the event came again.
- Signed: ``X-Station-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`` (the timestamp
  lets a receiver refuse old replays, ``verify_signature``). The secret comes from a file or the environment,
  never the command line (it would show in ``ps``).
- In order, retried: transport errors, 408, 425, 429 and 5xx back off exponentially with jitter (and honour a
  numeric Retry-After); a round stops at the first such failure and the events behind it wait, so a receiver
  that is down is asked once, not once per event, and an override never overtakes its decision. After
  ``max_attempts`` such failures an event moves to the dead-letter list so it cannot hold the queue for ever.
  Any other 4xx is permanent: the event goes to the dead-letter list (``status()``, shown by
  ``sync --status``) with the receiver's answer, and ``requeue_dead`` sends it again once the cause is fixed.
  Nothing is dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import random
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Callable, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from station.dbhandle import SqliteHandle, private_sqlite_files
from station.domain import InspectionRecord

SECRET_ENV = "STATION_WEBHOOK_SECRET"
MIN_SECRET_BYTES = 16
SIGNATURE_HEADER = "X-Station-Signature"
TRANSIENT_STATUSES = frozenset({408, 425, 429})


class WebhookError(RuntimeError):
    """Webhooks cannot run as configured (no secret, bad file); the message says what to do."""


class EventType(StrEnum):
    DISPOSITION_DECIDED = "disposition.decided"
    DISPOSITION_OVERRIDDEN = "disposition.overridden"


class EventState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class WebhooksConfig(BaseModel):
    """``[webhooks]`` in the station config. Off while ``url`` is unset."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["http"] = "http"
    url: str | None = Field(None, pattern=r"^https?://", description="receiver, e.g. https://wms.example/hooks")
    secret_file: Path | None = Field(None, description=f"file holding the HMAC secret (else env {SECRET_ENV})")
    timeout_s: float = Field(10.0, gt=0, le=120)
    backoff_base_s: float = Field(2.0, gt=0, le=600)
    backoff_max_s: float = Field(600.0, gt=0, le=86400)
    max_attempts: int = Field(20, ge=0, description="transient failures before the dead-letter list (20: about "
                                                    "3 hours at the default backoff); 0: retry for ever")
    batch: int = Field(50, ge=1, le=1000, description="events per delivery round")


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds")


def load_secret(secret_file: Path | None = None, env: dict | None = None) -> bytes:
    """The shared secret: from ``secret_file`` when given (only its owner may read it), else env
    STATION_WEBHOOK_SECRET. Surrounding whitespace (a trailing newline) is not part of it."""
    env = os.environ if env is None else env
    if secret_file is not None:
        path = Path(secret_file)
        try:
            mode = path.stat().st_mode
            raw = path.read_bytes().strip()
        except OSError as exc:
            raise WebhookError(f"cannot read the webhook secret file {path}: {exc.strerror or exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise WebhookError(f"webhook secret file {path} is readable by others: chmod 600 {path}")
        where = str(path)
    else:
        raw = env.get(SECRET_ENV, "").strip().encode("utf-8")
        where = f"env {SECRET_ENV}"
        if not raw:
            raise WebhookError(f"no webhook secret: set [webhooks] secret_file or env {SECRET_ENV}")
    if len(raw) < MIN_SECRET_BYTES:
        raise WebhookError(f"the webhook secret in {where} is shorter than {MIN_SECRET_BYTES} bytes: use a longer "
                           "random one (e.g. `openssl rand -hex 32`)")
    return raw


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: bytes, body: bytes, header: str, now: float | None = None,
                     tolerance_s: float = 300.0) -> bool:
    """What a receiver checks: the MAC over the timestamp and body, and a timestamp within ``tolerance_s``."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        ts = int(fields["t"])
        given = fields["v1"]
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, ts, body).split("v1=", 1)[1], given)


def idempotency_key(record_id: str, event: EventType | str) -> str:
    return f"{record_id}:{EventType(event).value}"


def disposition_payload(record: InspectionRecord, event: EventType | str, marketplace: dict | None = None,
                        category: str | None = None) -> dict:
    """What a receiver needs to act on a disposition, and no buyer data (there is none on the station)."""
    r, d = record.request, record.decision
    out = {
        "event": EventType(event).value,
        "idempotency_key": idempotency_key(record.record_id, event),
        "record_id": record.record_id,
        "overrides": record.overrides,
        "station_id": record.station_id,
        "decided_at": record.created_at,
        "order_id": r.order_id,
        "sku": r.sku,
        "unit_code": r.unit_code,
        "reason": r.reason.value,
        "grade": d.grade.value,
        "disposition": d.disposition.value,
        "proposed_disposition": (d.proposed_disposition or d.disposition).value,
        "review": d.review,
        "lane": record.lane,
        "liability": [{"party": s.party.value, "share": round(s.share, 4)} for s in d.liability],
    }
    if category is not None:
        out["category"] = category
    if marketplace is not None:
        out["marketplace"] = marketplace
    return out


def disposition_payload_from_row(row, event: EventType | str, marketplace: dict | None = None,
                                 category: str | None = None) -> dict:
    """The same payload from a store row (``StationStore.get`` / ``rows``): for an override, which the store
    writes as a row, not an InspectionRecord."""
    decision = json.loads(row["decision_json"])
    out = {
        "event": EventType(event).value,
        "idempotency_key": idempotency_key(row["record_id"], event),
        "record_id": row["record_id"],
        "overrides": row["overrides"],
        "station_id": row["station_id"],
        "decided_at": row["created_at"],
        "order_id": row["order_id"],
        "sku": row["sku"],
        "unit_code": row["unit_code"],
        "reason": row["reason"],
        "grade": row["grade"],
        "disposition": row["disposition"],
        "proposed_disposition": decision.get("proposed_disposition", row["disposition"]),
        "review": bool(row["review"]),
        "lane": row["lane"],
        "liability": [{"party": s["party"], "share": s["share"]} for s in decision.get("liability", [])],
    }
    if category is not None:
        out["category"] = category
    if marketplace is not None:
        out["marketplace"] = marketplace
    return out


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    key: str
    record_id: str
    event: str
    body: bytes
    attempts: int


class WebhookOutbox(SqliteHandle):
    """``<data_dir>/webhooks.db``. Opened with ``open()``; safe to use from the inspection thread (enqueue)
    and a delivery thread (its own instance) at once: WAL, short transactions."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def open(self) -> "WebhookOutbox":
        try:
            private_sqlite_files(self.path)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("""CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, record_id TEXT NOT NULL,
                event TEXT NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL, last_status INTEGER, last_error TEXT, created_at TEXT NOT NULL,
                done_at TEXT)""")
        except (OSError, sqlite3.Error) as exc:
            raise WebhookError(f"cannot open the webhook outbox {self.path}: {exc}") from None
        self._db = db
        return self

    def enqueue(self, payload: dict, now: float | None = None) -> bool:
        """Queue an event (``payload`` from ``disposition_payload``); False when its key is already queued."""
        key = payload["idempotency_key"]
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
        now = time.time() if now is None else now
        cur = self.db.execute(
            "INSERT OR IGNORE INTO events(key, record_id, event, body, state, next_attempt_at, created_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (key, payload["record_id"], payload["event"], body, EventState.PENDING.value, now, _utc(now)))
        return cur.rowcount == 1

    def due(self, now: float, limit: int) -> list[OutboxEvent]:
        """Pending events in queue order up to the first that is still backing off: delivery keeps the order
        (a record's override never overtakes its decision)."""
        rows = self.db.execute(
            "SELECT key, record_id, event, body, attempts, next_attempt_at FROM events WHERE state=? "
            "ORDER BY seq LIMIT ?", (EventState.PENDING.value, limit)).fetchall()
        out = []
        for k, r, e, b, a, at in rows:
            if at > now:
                break
            out.append(OutboxEvent(k, r, e, bytes(b), a))
        return out

    def next_attempt_at(self) -> float | None:
        """When the head of the queue is due (the events behind it wait for it)."""
        row = self.db.execute("SELECT next_attempt_at FROM events WHERE state=? ORDER BY seq LIMIT 1",
                              (EventState.PENDING.value,)).fetchone()
        return None if row is None else row[0]

    def delivered(self, key: str, status: int, now: float) -> None:
        self.db.execute("UPDATE events SET state=?, attempts=attempts+1, last_status=?, last_error=NULL, done_at=? "
                        "WHERE key=?", (EventState.DELIVERED.value, status, _utc(now), key))

    def retry_later(self, key: str, status: int | None, error: str, at: float) -> None:
        self.db.execute("UPDATE events SET attempts=attempts+1, last_status=?, last_error=?, next_attempt_at=? "
                        "WHERE key=?", (status, error, at, key))

    def dead(self, key: str, status: int | None, error: str, now: float) -> None:
        self.db.execute("UPDATE events SET state=?, attempts=attempts+1, last_status=?, last_error=?, done_at=? "
                        "WHERE key=?", (EventState.DEAD.value, status, error, _utc(now), key))

    def requeue_dead(self, key: str | None = None, now: float | None = None) -> int:
        """Dead letters (one, or all) back to pending, attempts reset: after the receiver or secret is fixed."""
        now = time.time() if now is None else now
        where, params = ("AND key=?", (key,)) if key else ("", ())
        cur = self.db.execute(f"UPDATE events SET state=?, attempts=0, next_attempt_at=?, done_at=NULL "
                              f"WHERE state=? {where}", (EventState.PENDING.value, now, EventState.DEAD.value,
                                                         *params))
        return cur.rowcount

    def state_of(self, key: str) -> tuple[EventState, int] | None:
        row = self.db.execute("SELECT state, attempts FROM events WHERE key=?", (key,)).fetchone()
        return None if row is None else (EventState(row[0]), int(row[1]))

    def status(self, dead_shown: int = 20) -> dict:
        """For ``sync --status``: counts, the next retry, the last error and the dead-letter list."""
        counts = dict(self.db.execute("SELECT state, COUNT(*) FROM events GROUP BY state").fetchall())
        nxt = self.next_attempt_at()
        last = self.db.execute("SELECT last_error FROM events WHERE state=? AND last_error IS NOT NULL "
                               "ORDER BY seq LIMIT 1", (EventState.PENDING.value,)).fetchone()
        dead = [{"key": k, "record_id": r, "event": e, "attempts": a, "status": s, "error": err, "at": at}
                for k, r, e, a, s, err, at in self.db.execute(
                    "SELECT key, record_id, event, attempts, last_status, last_error, done_at FROM events "
                    "WHERE state=? ORDER BY seq DESC LIMIT ?", (EventState.DEAD.value, dead_shown))]
        return {"pending": counts.get(EventState.PENDING.value, 0),
                "delivered": counts.get(EventState.DELIVERED.value, 0),
                "dead": counts.get(EventState.DEAD.value, 0),
                "next_attempt_at": None if nxt is None else _utc(nxt),
                "last_error": last[0] if last else None,
                "dead_letters": dead}


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    delivered: int
    retrying: int  # failed transiently this round, due again later
    dead: int
    next_attempt_at: float | None

    def to_json(self) -> dict:
        return {"delivered": self.delivered, "retrying": self.retrying, "dead": self.dead,
                "next_attempt_at": None if self.next_attempt_at is None else _utc(self.next_attempt_at)}


class WebhookSender:
    """Posts outbox events to one URL. Nothing is opened in the constructor; ``client`` for tests or a shared
    pool, else one is made on first use."""

    def __init__(self, url: str, secret: bytes, timeout_s: float = 10.0, backoff_base_s: float = 2.0,
                 backoff_max_s: float = 600.0, max_attempts: int = 20, batch: int = 50,
                 client: httpx.Client | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise WebhookError(f"the webhook secret must be at least {MIN_SECRET_BYTES} bytes")
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.batch = batch
        self._client = client
        self.rng = rng or random.Random()
        self.clock = clock

    @classmethod
    def from_config(cls, cfg: WebhooksConfig, base_dir: Path | None = None, **kw) -> "WebhookSender":
        if not cfg.url:
            raise WebhookError("webhooks are off: set [webhooks] url")
        secret_file = cfg.secret_file
        if secret_file is not None and base_dir is not None and not secret_file.is_absolute():
            secret_file = base_dir / secret_file
        return cls(cfg.url, load_secret(secret_file), cfg.timeout_s, cfg.backoff_base_s, cfg.backoff_max_s,
                   cfg.max_attempts, cfg.batch, **kw)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _backoff(self, attempts: int, retry_after: str | None) -> float:
        from station.sync import backoff_delay

        delay = backoff_delay(attempts, self.backoff_base_s, self.backoff_max_s, self.rng)
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, min(float(retry_after), self.backoff_max_s))
        return delay

    def post(self, event: OutboxEvent) -> httpx.Response:
        headers = {"Content-Type": "application/json", "Idempotency-Key": event.key, "X-Station-Event": event.event,
                   SIGNATURE_HEADER: signature(self._secret, int(self.clock()), event.body),
                   "User-Agent": "inspection-station-webhooks/1"}
        return self.client.post(self.url, content=event.body, headers=headers)

    def deliver_pending(self, outbox: WebhookOutbox, now: float | None = None) -> DeliveryReport:
        """One delivery round over the events due at ``now``, oldest first. Called from the sync loop."""
        now = self.clock() if now is None else now
        delivered = retrying = dead = 0
        for event in outbox.due(now, self.batch):
            status: int | None = None
            retry_after = None
            try:
                resp = self.post(event)
                status = resp.status_code
                retry_after = resp.headers.get("Retry-After")
                if 200 <= status < 300:
                    outbox.delivered(event.key, status, now)
                    delivered += 1
                    continue
                error = f"HTTP {status}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            permanent = status is not None and 400 <= status < 500 and status not in TRANSIENT_STATUSES
            attempts = event.attempts + 1
            if permanent or (self.max_attempts and attempts >= self.max_attempts):
                why = error if permanent else f"gave up after {attempts} attempts: {error}"
                outbox.dead(event.key, status, why, now)
                dead += 1
                if permanent:
                    continue  # this event's fault, not the receiver's: the next one may go through
                break
            outbox.retry_later(event.key, status, error, now + self._backoff(attempts, retry_after))
            retrying += 1
            break  # the receiver is down or overloaded: ask once per round, keep the order
        return DeliveryReport(delivered, retrying, dead, outbox.next_attempt_at())

    def run_forever(self, outbox: WebhookOutbox, stop: threading.Event, idle_s: float = 5.0) -> None:
        """Deliver until ``stop`` is set, sleeping until the next event is due (at most ``idle_s``)."""
        while not stop.is_set():
            report = self.deliver_pending(outbox)
            wait = idle_s if report.next_attempt_at is None else report.next_attempt_at - self.clock()
            stop.wait(max(0.05, min(idle_s, wait)))


def status(db_path: Path) -> dict:
    """``sync --status``'s webhook block; an outbox that does not exist yet has nothing in it."""
    db_path = Path(db_path)
    if not db_path.exists():
        return {"pending": 0, "delivered": 0, "dead": 0, "next_attempt_at": None, "last_error": None,
                "dead_letters": []}
    with WebhookOutbox(db_path) as outbox:
        return outbox.status()
