"""The platform API (FastAPI), everything under ``/api/v1/``.

Auth: ``Authorization: Bearer <token>``. Tokens belong to a station (role ``station``, subject = station id)
or a user (``inspector``, ``supervisor``, ``admin``). The auth middleware answers 401 before any handler
runs, so a request without a valid token never has its body read; a role acting beyond its rights gets 403.
Bad payloads get 4xx with a message (422 from validation, 409 on conflicts), never a 500.

Scope: a station writes only its own records, overrides only its own records and thumbnails only its own
images (each station's thumbnails are kept apart); an inspector token names one station (``station_id``) and
reads only that station's records and images; supervisors and admins read everything. Every token is looked
up in the database on every request (a revocation is effective at once) and expires (``expires_at``).

Witnessing: a station's signed tree head is stored only when it extends the last head the platform holds,
shown by an RFC 9162 consistency proof (``consistency`` in the batch); a fork or a head that does not extend
is answered 409 and kept (``tree_head_conflicts``) next to the head it contradicts.

Limits: bodies over 64 MiB get 413, with or without Content-Length (chunked bodies are counted as they are
read); integers beyond the database's range get 422; ``decision_json`` must be a decision.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import contextlib
import hashlib
import json
import math
import secrets
import threading
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import create_engine, event, func, insert, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from station.domain import Disposition, Grade, Party, ReturnReason
from station.evidence import (
    EvidenceError,
    SignedTreeHead,
    key_id_of,
    leaf_hash,
    load_public_key,
    record_leaf_data,
    verify_consistency,
)
from station.server.models import (
    CatalogueEntry,
    Image,
    Record,
    RecordConflict,
    RecordImage,
    Rma,
    StationKeyRow,
    Thumbnail,
    Token,
    TreeHead,
    TreeHeadConflict,
)

API = "/api/v1"
ROLES = ("station", "inspector", "supervisor", "admin")
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_BATCH = 1000
SHA256 = r"^[0-9a-f]{64}$"
ID = r"^[A-Za-z0-9_.:-]{1,64}$"
# The platform's integer columns are 32-bit on PostgreSQL (64-bit on SQLite): every integer in a body or a
# query is bounded to what both hold, so a larger one is a 422, never an OverflowError (500) or a DataError.
INT_MAX = 2**31 - 1
Int32 = Annotated[int, Field(ge=-INT_MAX - 1, le=INT_MAX)]
Count = Annotated[int, Field(ge=0, le=INT_MAX)]
DAY_S = 86400
DEFAULT_TTL_S = {"station": 365 * DAY_S, "inspector": 30 * DAY_S, "supervisor": 30 * DAY_S, "admin": 30 * DAY_S}
MAX_TTL_S = 5 * 365 * DAY_S
_ROLE_DEFAULT = object()


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _parse_time(value: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ------------------------------------------------------------------------------------------- database


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the server
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # A fleet's requests run side by side (one connection each, the auth lookup included): room for them.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def serialise(s: Session, *names: str) -> None:
    """Make writers of the same ``names`` (a station, a pull table) take turns across platform processes that
    share one PostgreSQL database: transaction-scoped advisory locks, released at commit or rollback, taken
    in one order (no deadlock). Without them two processes both find a record id new and one insert fails
    (a 409 to a station that only retried). SQLite has one writer per file: the write lock is taken before
    the first read instead (a write that changes nothing), so the transaction reads what the last writer
    committed; call it first in the transaction."""
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        s.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0"))
    elif dialect == "postgresql":
        for name in sorted(set(names)):
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(name)})


def insert_missing(s: Session, model, rows: list[dict]) -> None:
    """INSERT rows, skipping those whose primary key another writer stored meanwhile (content-addressed rows:
    images, thumbnails, which any station may send at the same moment)."""
    if not rows:
        return
    keys = [c.key for c in model.__table__.primary_key.columns]
    rows = sorted(rows, key=lambda r: tuple(r[k] for k in keys))  # one lock order: writers never deadlock
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - the platform runs on SQLite or PostgreSQL
        s.execute(insert(model), rows)
        return
    s.execute(dialect_insert(model).on_conflict_do_nothing(), rows)


def init_db(engine: Engine) -> str | None:
    """Bring the database to the newest schema with the package's alembic migrations (a no-op when it is
    there already); returns the revision. See station/server/schema.py."""
    from station.server.schema import upgrade

    return upgrade(engine)


def create_token(engine: Engine, role: str, subject: str, token: str | None = None, station_id: str | None = None,
                 expires_in_s: float | None = _ROLE_DEFAULT) -> str:  # type: ignore[assignment]
    """Create a token; returns the token text. The database keeps only its hash (which is the token's id).

    ``station_id``: the station an inspector may read (a station token's is its subject). ``expires_in_s``:
    lifetime, by default ``DEFAULT_TTL_S[role]``; ``None`` makes a token that never expires (only from code,
    never through the API). Naming an existing token updates its role, subject and scope but never its expiry,
    and never brings back a revoked or expired one (ValueError: issue a new token)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if role == "station":
        if station_id not in (None, subject):
            raise ValueError(f"a station token is scoped to its own station {subject!r}, not {station_id!r}")
        station_id = subject
    if expires_in_s is _ROLE_DEFAULT:
        expires_in_s = DEFAULT_TTL_S[role]
    expires_at = None
    if expires_in_s is not None:
        expires_at = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=float(expires_in_s))) \
            .isoformat(timespec="milliseconds")
    token = token or secrets.token_urlsafe(32)
    with Session(engine) as s, s.begin():
        row = s.get(Token, hash_token(token))
        if row is None:
            s.add(Token(token_hash=hash_token(token), role=role, subject=subject, station_id=station_id,
                        created_at=utc_now(), expires_at=expires_at, revoked=False))
        else:
            if row.revoked:
                raise ValueError(f"the token of {row.subject!r} was revoked: issue a new token")
            if _expired(row.expires_at):
                raise ValueError(f"the token of {row.subject!r} expired at {row.expires_at}: issue a new token")
            row.role, row.subject, row.station_id = role, subject, station_id
    return token


def _expired(expires_at: str | None, now: dt.datetime | None = None) -> bool:
    if expires_at is None:
        return False
    t = _parse_time(expires_at)
    return t is None or t <= (now or dt.datetime.now(dt.timezone.utc))


# ------------------------------------------------------------------------------------------- payloads


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageRef(_In):
    view: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=SHA256)


class RecordIn(_In):
    """One station record as logged. ``extra="forbid"``: no field beyond these (no buyer PII) is accepted."""

    record_id: str = Field(pattern=ID)
    created_at: str = Field(min_length=10, max_length=40)
    station_id: str = Field(pattern=ID)
    order_id: str = Field(min_length=1, max_length=128)
    sku: str = Field(min_length=1, max_length=128)
    unit_code: str | None = Field(None, max_length=128)
    reason: ReturnReason
    channel: str | None = Field(None, max_length=64)
    streamer: str | None = Field(None, max_length=128)
    brand: str | None = Field(None, max_length=128)
    carrier: str | None = Field(None, max_length=128)
    grade: Grade
    disposition: Disposition
    review: int = Field(ge=0, le=1)
    lane: Int32 | None = None
    confidence: float = Field(ge=0, le=1)
    model_version: str = Field(max_length=128)
    rules_fired: str = Field(max_length=4096)
    decision_json: str = Field(max_length=65536)
    findings_json: str = Field(max_length=262144)
    timings_json: str = Field(max_length=16384)
    operator: str | None = Field(None, max_length=128)
    overrides: str | None = Field(None, pattern=ID)
    override_reason: str | None = Field(None, max_length=4096)
    leaf_index: Count | None = None
    leaf_hash: str | None = Field(None, pattern=SHA256)
    images: list[ImageRef] = Field(default_factory=list, max_length=64)

    @field_validator("findings_json")
    @classmethod
    def _findings(cls, v: str) -> str:
        if not isinstance(_loads(v), list):
            raise ValueError("findings_json must be a JSON array of findings")
        return v

    @field_validator("timings_json")
    @classmethod
    def _timings(cls, v: str) -> str:
        if not isinstance(_loads(v), dict):
            raise ValueError("timings_json must be a JSON object")
        return v

    @field_validator("decision_json")
    @classmethod
    def _decision(cls, v: str) -> str:
        check_decision(_loads(v))
        return v

    @model_validator(mode="after")
    def _decision_matches(self) -> "RecordIn":
        d = json.loads(self.decision_json)
        if d["grade"] != self.grade.value or d["disposition"] != self.disposition.value:
            raise ValueError(f"decision_json says grade {d['grade']} / {d['disposition']} but the record says "
                             f"{self.grade.value} / {self.disposition.value}")
        return self


def _loads(v: str):
    """JSON text to a value; ValueError (a 422) for anything that is not JSON, NaN and nesting bombs included."""
    try:
        return json.loads(v, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


_GRADES = {g.value for g in Grade}
_DISPOSITIONS = {d.value for d in Disposition}
_PARTIES = {pp.value for pp in Party}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_decision(d) -> dict:
    """The schema of a decision (``Decision.to_json`` and what overrides add): raises ValueError naming what is
    wrong. Keys beyond these (measurements, boxes, ...) are allowed; those below must have these types."""
    if not isinstance(d, dict):
        raise ValueError(f"decision_json must be a JSON object (a decision), not {type(d).__name__}")
    if d.get("grade") not in _GRADES:
        raise ValueError(f"decision_json: grade must be one of {', '.join(sorted(_GRADES))}")
    if d.get("disposition") not in _DISPOSITIONS:
        raise ValueError(f"decision_json: disposition must be one of {', '.join(sorted(_DISPOSITIONS))}")
    if "proposed_disposition" in d and d["proposed_disposition"] not in _DISPOSITIONS:
        raise ValueError("decision_json: proposed_disposition must be a disposition")
    if not _str_list(d.get("rules_fired")):
        raise ValueError("decision_json: rules_fired must be a list of rule ids")
    if "reasons" in d and not _str_list(d["reasons"]):
        raise ValueError("decision_json: reasons must be a list of strings")
    if "review" in d and not isinstance(d["review"], bool):
        raise ValueError("decision_json: review must be true or false")
    if "confidence" in d and not (_number(d["confidence"]) and 0 <= d["confidence"] <= 1):
        raise ValueError("decision_json: confidence must be a number in [0, 1]")
    shares = d.get("liability")
    if not isinstance(shares, list) or len(shares) > 16:
        raise ValueError("decision_json: liability must be a list of at most 16 shares")
    total = 0.0
    for sh in shares:
        if not isinstance(sh, dict) or sh.get("party") not in _PARTIES:
            raise ValueError(f"decision_json: each liability share needs a party, one of {', '.join(sorted(_PARTIES))}")
        if not (_number(sh.get("share")) and 0 <= sh["share"] <= 1):
            raise ValueError("decision_json: each liability share needs a share in [0, 1]")
        if "rule" in sh and not isinstance(sh["rule"], str):
            raise ValueError("decision_json: a liability share's rule must be a string")
        total += sh["share"]
    if total > 1.001:
        raise ValueError(f"decision_json: liability shares sum to {total:g}, over 1")
    return d


class HeadIn(_In):
    tree_size: Count
    root_hash: str = Field(pattern=SHA256)
    signed_at: str = Field(max_length=40)
    key_id: str = Field(max_length=32)
    signature: str = Field(max_length=128)


class ConsistencyIn(_In):
    """RFC 9162 consistency proof from the platform's last head of this station (``old_size``) to ``head``."""

    old_size: Count
    proof: list[Annotated[str, Field(pattern=SHA256)]] = Field(default_factory=list, max_length=64)


class BatchIn(_In):
    records: list[RecordIn] = Field(max_length=MAX_BATCH)
    thumbnails: dict[str, str] = Field(default_factory=dict, max_length=MAX_BATCH * 64,
                                       description="sha256 -> base64 JPEG thumbnail of an image of these records")
    head: HeadIn | None = None
    consistency: ConsistencyIn | None = Field(None, description="needed when the platform holds an older head")
    public_key_pem: str | None = Field(None, max_length=1024)


class ImageIn(_In):
    sha256: str = Field(pattern=SHA256)
    data_b64: str


class ImagesIn(_In):
    images: list[ImageIn] = Field(max_length=MAX_BATCH)


class OverrideIn(_In):
    overrides: str = Field(pattern=ID, description="record id of the record this one overrides")
    reason: str = Field(min_length=1, max_length=4096)
    grade: Grade | None = None
    disposition: Disposition | None = None


class TokenIn(_In):
    role: Literal["station", "inspector", "supervisor", "admin"]
    subject: str = Field(pattern=ID)
    station_id: str | None = Field(None, pattern=ID, description="the one station an inspector reads")
    expires_in_s: int | None = Field(None, ge=1, le=MAX_TTL_S, description="lifetime; default by role")


class RmaIn(_In):
    order_id: str = Field(min_length=1, max_length=128)
    sku: str = Field(min_length=1, max_length=128)
    reason: ReturnReason
    unit_code: str | None = Field(None, max_length=128)
    channel: str | None = Field(None, max_length=64)
    streamer: str | None = Field(None, max_length=128)
    brand: str | None = Field(None, max_length=128)
    carrier: str | None = Field(None, max_length=128)


class RmasIn(_In):
    rmas: list[RmaIn] = Field(max_length=10000)


class CatalogueIn(_In):
    sku: str = Field(min_length=1, max_length=128)
    category: str = Field(min_length=1, max_length=64)
    brand: str = Field(min_length=1, max_length=128)
    name: str = Field("", max_length=256)
    hygiene: bool = False
    safety: bool = False
    liquid: bool = False


class CataloguesIn(_In):
    items: list[CatalogueIn] = Field(max_length=10000)


# ------------------------------------------------------------------------------------------- auth


class Principal(BaseModel):
    role: str
    subject: str
    station_id: str | None = None  # the station a station or inspector token is scoped to
    token_id: str = ""
    expires_at: str | None = None

    def public(self) -> dict:
        out = {"role": self.role, "subject": self.subject}
        if self.role == "inspector" and self.station_id:
            out["station_id"] = self.station_id
        return out

    @property
    def reads_all(self) -> bool:
        return self.role in ("supervisor", "admin")


class _BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"body over {MAX_BODY_BYTES} bytes: send smaller batches")


def _limited(receive, limit: int):
    """``receive`` counting body bytes: past ``limit`` it raises 413 (chunked bodies have no Content-Length)."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge()
        return message

    return wrapped


class _AuthMiddleware:
    """Pure ASGI: checks the bearer token of every /api/v1 request before the app (and the body) is touched."""

    def __init__(self, app, lookup) -> None:
        self.app = app
        self.lookup = lookup

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API + "/"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        principal = None
        if auth[:7].lower() == "bearer " and auth[7:].strip():
            try:
                principal = self.lookup(auth[7:].strip())
            except SQLAlchemyError:
                resp = JSONResponse({"detail": "platform database unavailable, retry later"}, status_code=503)
                return await resp(scope, receive, send)
        if principal is None:
            msg = "missing bearer token" if not auth else "invalid or revoked token"
            resp = JSONResponse({"detail": msg}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await resp(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and (len(length) > 12 or int(length) > MAX_BODY_BYTES):
            resp = JSONResponse({"detail": f"body over {MAX_BODY_BYTES} bytes: send smaller batches"},
                                status_code=413)
            return await resp(scope, receive, send)
        scope.setdefault("state", {})["principal"] = principal
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            return await self.app(scope, _limited(receive, MAX_BODY_BYTES), tracking_send)
        except _BodyTooLarge as exc:  # raised outside a handler (a body read by middleware): answer it here
            if started:
                raise
            resp = JSONResponse({"detail": exc.detail}, status_code=413)
            return await resp(scope, receive, send)


def principal(request: Request) -> Principal:
    return request.state.principal


def require(*roles: str):
    def dep(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if p.role not in roles and p.role != "admin":
            raise HTTPException(403, f"role {p.role!r} may not do this (needs {' or '.join(roles)})")
        return p

    return dep


# ------------------------------------------------------------------------------------------- app


def _record_row(r: RecordIn, now: str) -> dict:
    d = r.model_dump(exclude={"images"})
    d["reason"] = r.reason.value
    d["grade"] = r.grade.value
    d["disposition"] = r.disposition.value
    d["received_at"] = now
    d["source"] = "station"
    return d


def _record_out(rec: Record, images: list[tuple[str, str]]) -> dict:
    out = {c.key: getattr(rec, c.key) for c in Record.__table__.columns}
    out["decision"] = json.loads(out.pop("decision_json"))
    out["findings"] = json.loads(out.pop("findings_json"))
    out["timings_ms"] = json.loads(out.pop("timings_json"))
    out["review"] = bool(out["review"])
    out["images"] = [{"view": v, "sha256": s} for v, s in images]
    return out


def _b64(data: str, what: str, limit: int) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{what}: not valid base64") from None
    if len(raw) > limit:
        raise HTTPException(413, f"{what}: {len(raw)} bytes, over the {limit} byte limit")
    return raw


def create_app(database_url: str = "sqlite:///platform.db", engine: Engine | None = None) -> FastAPI:
    """Build the app. The schema is migrated to head on startup (``init_db``, alembic); no I/O here."""
    engine = engine or make_engine(database_url)
    # SQLite: one writer at a time (it serialises writers anyway; this spares them busy waits). PostgreSQL:
    # the writes of different stations run side by side; ``serialise`` orders those of the same station or
    # pull table, in this process and in every other one on the database.
    write_lock = threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    def lookup(token: str) -> Principal | None:
        """The token's principal, read from the database on every request (no cache: a revocation, by this
        process or another one on the same database, is effective at once); None when unknown, revoked or
        expired."""
        h = hash_token(token)
        with Session(engine) as s:
            row = s.get(Token, h)
        if row is None or row.revoked or _expired(row.expires_at):
            return None
        return Principal(role=row.role, subject=row.subject, token_id=h, expires_at=row.expires_at,
                         station_id=row.subject if row.role == "station" else row.station_id)

    @asynccontextmanager
    async def lifespan(_app):
        init_db(engine)
        yield

    app = FastAPI(title="Returns inspection platform", version="1.0", lifespan=lifespan,
                  description="Stations push inspections, overrides and images (idempotent by record id and "
                              "content hash) and pull RMAs and catalogue updates; supervisors and admins read "
                              "per-brand and per-streamer aggregates. Auth: `Authorization: Bearer <token>`.")
    app.state.engine = engine

    @app.exception_handler(SQLAlchemyError)
    async def _db_error(request: Request, exc: SQLAlchemyError):
        if isinstance(exc, IntegrityError):
            return JSONResponse({"detail": "conflicts with stored data (duplicate or missing reference)"}, 409)
        return JSONResponse({"detail": "platform database unavailable, retry later"}, 503)

    app.add_middleware(_AuthMiddleware, lookup=lookup)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    @app.get(f"{API}/whoami")
    def whoami(p: Annotated[Principal, Depends(principal)]) -> dict:
        return p.public()

    # ---------------------------------------------------------------- push (stations)
    @app.post(f"{API}/records/batch")
    def push_records(batch: BatchIn, p: Annotated[Principal, Depends(require("station"))]) -> dict:
        """Push inspections and overrides; idempotent by record id. A different version of a known id is kept
        as a conflict (never applied). Each record must match its evidence-log leaf hash. A station pushes
        only its own records, overrides only its own records, and sends thumbnails only of images its records
        in this batch reference. With ``head``: the station's signed tree head, stored when it extends the
        last one the platform holds (``consistency``); the answer then carries the platform's head."""
        now = utc_now()
        for r in batch.records:
            if p.role == "station" and r.station_id != p.subject:
                raise HTTPException(403, f"station {p.subject!r} may not push records of station {r.station_id!r}")
            if r.leaf_hash is not None:
                data = record_leaf_data(r.model_dump(mode="json"), [(i.view, i.sha256) for i in r.images])
                if leaf_hash(data).hex() != r.leaf_hash:
                    raise HTTPException(422, f"record {r.record_id} does not match its evidence leaf hash")
        thumbs = {sha: _b64(b, f"thumbnail {sha}", 512 * 1024) for sha, b in batch.thumbnails.items()}
        if any(len(sha) != 64 for sha in thumbs):
            raise HTTPException(422, "thumbnails are keyed by the full image's sha256")
        ids = [r.record_id for r in batch.records]
        if len(set(ids)) != len(ids):
            raise HTTPException(422, "a batch lists the same record id twice")
        stations = {r.station_id for r in batch.records}
        if p.role == "station":
            station_id = p.subject
        elif len(stations) <= 1:
            station_id = next(iter(stations), p.subject)
        else:
            station_id = None
        if thumbs or batch.head is not None:
            if station_id is None:
                raise HTTPException(422, "thumbnails and a signed head need the records of one station per batch")
        referenced = {i.sha256 for r in batch.records for i in r.images}
        stray = sorted(set(thumbs) - referenced)
        if stray:
            raise HTTPException(422, f"thumbnail {stray[0]} is not of an image of a record in this batch")
        in_batch = {r.record_id: r.station_id for r in batch.records}
        try:
            with write_lock, Session(engine) as s, s.begin():
                serialise(s, *(f"station:{sid}" for sid in stations | ({station_id} if station_id else set())))
                res = _store_batch(s, batch, ids, in_batch, thumbs, station_id, now)
                if batch.head is not None:
                    res["head"] = _store_head(s, batch, station_id)
            return res
        except _HeadRefused as refused:
            c = refused.conflict
            with write_lock, Session(engine) as s, s.begin():
                serialise(s, f"station:{c.station_id}")
                seen = s.scalar(select(func.count()).select_from(TreeHeadConflict).where(
                    TreeHeadConflict.station_id == c.station_id, TreeHeadConflict.tree_size == c.tree_size,
                    TreeHeadConflict.root_hash == c.root_hash, TreeHeadConflict.signature == c.signature,
                    TreeHeadConflict.last_tree_size == c.last_tree_size))
                if not seen:  # a station retrying the same refused head is kept once
                    s.add(c)
            return JSONResponse(refused.body, status_code=409)

    def _store_batch(s: Session, batch: BatchIn, ids: list[str], in_batch: dict[str, str],
                     thumbs: dict[str, bytes], station_id: str | None, now: str) -> dict:
        existing: dict[str, Record] = {}
        wanted = ids + [r.overrides for r in batch.records if r.overrides and r.overrides not in in_batch]
        for chunk in range(0, len(wanted), 500):
            for rec in s.scalars(select(Record).where(Record.record_id.in_(wanted[chunk:chunk + 500]))):
                existing[rec.record_id] = rec
        new_rows, new_imgs, conflicts = [], [], 0
        for r in batch.records:
            old = existing.get(r.record_id)
            if old is not None and old.station_id != r.station_id:
                raise HTTPException(403, f"record id {r.record_id} is another station's record")
            if r.overrides:
                target = in_batch.get(r.overrides) or getattr(existing.get(r.overrides), "station_id", None)
                if target is not None and target != r.station_id:
                    raise HTTPException(403, f"record {r.record_id} overrides {r.overrides}, another station's "
                                             f"record: a station overrides only its own records")
            if old is None:
                new_rows.append(_record_row(r, now))
                new_imgs += [{"record_id": r.record_id, "view": i.view, "sha256": i.sha256} for i in r.images]
            elif (old.leaf_hash, old.decision_json, old.order_id) != (r.leaf_hash, r.decision_json, r.order_id):
                conflicts += 1
                s.add(RecordConflict(record_id=r.record_id, station_id=r.station_id, received_at=now,
                                     payload_json=r.model_dump_json()))
        if new_rows:
            s.execute(insert(Record), new_rows)
        if new_imgs:
            s.execute(insert(RecordImage), new_imgs)
        if thumbs:
            shas = list(thumbs)
            have = set(s.scalars(select(Image.sha256).where(Image.sha256.in_(shas))))
            # a placeholder until the full image arrives (another station may be storing it right now)
            insert_missing(s, Image, [{"sha256": k, "size": 0, "received_at": now} for k in shas if k not in have])
            mine = set(s.scalars(select(Thumbnail.sha256).where(Thumbnail.station_id == station_id,
                                                                Thumbnail.sha256.in_(shas))))
            insert_missing(s, Thumbnail, [{"station_id": station_id, "sha256": k, "thumbnail": v, "received_at": now}
                                          for k, v in thumbs.items() if k not in mine])
        return {"created": len(new_rows), "existing": len(batch.records) - len(new_rows) - conflicts,
                "conflicts": conflicts}

    class _HeadRefused(Exception):
        def __init__(self, body: dict, conflict: TreeHeadConflict | None = None) -> None:
            super().__init__(body["detail"])
            self.body, self.conflict = body, conflict

    def _head_json(h: TreeHead) -> dict:
        return {c: getattr(h, c) for c in ("tree_size", "root_hash", "signed_at", "key_id", "signature")}

    def _store_head(s: Session, batch: BatchIn, station_id: str) -> dict:
        """Witness a signed head: verify its signature, then that it extends the last head held (RFC 9162
        consistency proof). Returns the platform's latest head of the station afterwards."""
        head = SignedTreeHead.from_json(batch.head.model_dump())
        known = s.get(StationKeyRow, station_id)
        if known is None:
            if not batch.public_key_pem:
                raise HTTPException(422, "first signed head of a station needs its public_key_pem")
            try:
                key = load_public_key(batch.public_key_pem.encode())
            except EvidenceError as exc:
                raise HTTPException(422, f"public_key_pem: {exc}") from None
            s.add(StationKeyRow(station_id=station_id, public_key_pem=batch.public_key_pem, key_id=key_id_of(key)))
        else:
            key = load_public_key(known.public_key_pem.encode())
            if batch.public_key_pem and batch.public_key_pem.strip() != known.public_key_pem.strip():
                raise HTTPException(409, f"station {station_id} changed its key: an admin must confirm the new key")
        if not head.verify(key):
            raise HTTPException(422, "signed head: bad signature for this station's key")
        last = s.scalars(select(TreeHead).where(TreeHead.station_id == station_id)
                         .order_by(TreeHead.tree_size.desc()).limit(1)).first()

        def refuse(reason: str, against: TreeHead, fork: bool = True):
            """409, and the refused head kept next to the one it contradicts. ``fork``: proven not to extend
            it (False: no proof from the right size was given, so a station may retry with one)."""
            body = {"detail": f"signed head of size {head.tree_size} refused: {reason}",
                    "platform_head": _head_json(against), "fork": fork}
            conflict = TreeHeadConflict(station_id=station_id, **head.to_json(), last_tree_size=against.tree_size,
                                        last_root_hash=against.root_hash, reason=reason, received_at=utc_now())
            raise _HeadRefused(body, conflict)

        if last is None:
            s.add(TreeHead(station_id=station_id, **head.to_json()))
            return head.to_json()
        same = s.get(TreeHead, (station_id, head.tree_size))
        if same is not None:
            if same.root_hash != head.root_hash:
                refuse(f"a fork: the platform holds a different root for size {head.tree_size}", same)
            return _head_json(last)
        if head.tree_size < last.tree_size:
            # An older head arriving late (a slower request of the same station): its place in the log cannot
            # be proven from here, so it is not stored; the later head already witnessed stands.
            return _head_json(last)
        proof = batch.consistency
        if proof is None or proof.old_size != last.tree_size:
            refuse(f"it needs a consistency proof from the platform's last head (size {last.tree_size})"
                   + ("" if proof is None else f", not from size {proof.old_size}"), last, fork=False)
        if not verify_consistency(last.tree_size, head.tree_size, bytes.fromhex(last.root_hash),
                                  bytes.fromhex(head.root_hash), [bytes.fromhex(h) for h in proof.proof]):
            refuse(f"it does not extend the platform's last head (size {last.tree_size}): the consistency "
                   f"proof fails", last)
        s.add(TreeHead(station_id=station_id, **head.to_json()))
        return head.to_json()

    @app.post(f"{API}/images/batch")
    def push_images(body: ImagesIn, p: Annotated[Principal, Depends(require("station"))]) -> dict:
        """Full images, idempotent by content hash; each must hash to its name."""
        now = utc_now()
        decoded = {}
        for im in body.images:
            raw = _b64(im.data_b64, f"image {im.sha256}", 32 * 1024 * 1024)
            if hashlib.sha256(raw).hexdigest() != im.sha256:
                raise HTTPException(422, f"image {im.sha256}: content does not hash to its name")
            decoded[im.sha256] = raw
        with write_lock, Session(engine) as s, s.begin():
            stored = 0
            have = dict(s.execute(select(Image.sha256, Image.data.is_(None))
                                  .where(Image.sha256.in_(list(decoded)))).all()) if decoded else {}
            # Content-addressed: another station (or platform process) may store the same image meanwhile;
            # whoever is first stores it, the others find it there.
            insert_missing(s, Image, [{"sha256": sha, "data": raw, "size": len(raw), "received_at": now}
                                      for sha, raw in decoded.items() if sha not in have])
            stored += sum(sha not in have for sha in decoded)
            for sha in sorted(sha for sha, placeholder in have.items() if placeholder):
                res = s.execute(update(Image).where(Image.sha256 == sha, Image.data.is_(None))
                                .values(data=decoded[sha], size=len(decoded[sha])))
                stored += res.rowcount
        return {"stored": stored, "existing": len(decoded) - stored}

    # ---------------------------------------------------------------- overrides (supervisors)
    @app.post(f"{API}/overrides", status_code=201)
    def create_override(body: OverrideIn, p: Annotated[Principal, Depends(require("supervisor"))]) -> dict:
        """A supervisor override is a new record pointing at the one it overrides; the original is kept."""
        import uuid

        with write_lock, Session(engine) as s, s.begin():
            orig = s.get(Record, body.overrides)
            if orig is None:
                raise HTTPException(404, f"record {body.overrides} not found")
            try:
                decision = check_decision(_loads(orig.decision_json))
            except ValueError as exc:  # a row stored before decisions were validated
                raise HTTPException(409, f"record {body.overrides} has a malformed decision: {exc}") from None
            decision["rules_fired"] = list(decision.get("rules_fired", [])) + ["OVERRIDE"]
            if body.grade is not None:
                decision["grade"] = body.grade.value
            if body.disposition is not None:
                decision["disposition"] = body.disposition.value
            decision["review"] = False
            cols = {c.key: getattr(orig, c.key) for c in Record.__table__.columns}
            cols.update(record_id=uuid.uuid4().hex, created_at=utc_now(), received_at=utc_now(),
                        grade=decision["grade"], disposition=decision["disposition"], review=0,
                        rules_fired=" ".join(decision["rules_fired"]), decision_json=json.dumps(decision),
                        timings_json="{}", operator=p.subject, overrides=orig.record_id,
                        override_reason=body.reason, leaf_index=None, leaf_hash=None, source="platform")
            s.add(Record(**cols))
        return {"record_id": cols["record_id"], "overrides": body.overrides}

    # ---------------------------------------------------------------- reads
    # Supervisors and admins read every station; an inspector reads only the station its token names (an
    # inspector token without one reads no records); a record or image out of scope is "not found".
    def _scope(p: Principal) -> str | None:
        if p.reads_all:
            return None
        if not p.station_id:
            raise HTTPException(403, f"the token of {p.subject!r} names no station: an admin issues inspector "
                                     f"tokens with station_id")
        return p.station_id

    @app.get(f"{API}/inspections")
    def list_inspections(p: Annotated[Principal, Depends(require("inspector", "supervisor"))],
                         order_id: str | None = None, brand: str | None = None, streamer: str | None = None,
                         station_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         offset: Annotated[int, Query(ge=0, le=INT_MAX)] = 0) -> dict:
        scope = _scope(p)
        if scope is not None and station_id not in (None, scope):
            raise HTTPException(403, f"{p.subject!r} reads only the records of station {scope!r}")
        station_id = station_id or scope
        with Session(engine) as s:
            q = select(Record)
            for col, val in ((Record.order_id, order_id), (Record.brand, brand), (Record.streamer, streamer),
                             (Record.station_id, station_id)):
                if val is not None:
                    q = q.where(col == val)
            total = s.scalar(select(func.count()).select_from(q.subquery()))
            recs = list(s.scalars(q.order_by(Record.created_at, Record.record_id).limit(limit).offset(offset)))
            imgs: dict[str, list] = {}
            if recs:
                for ri in s.scalars(select(RecordImage).where(RecordImage.record_id.in_([r.record_id for r in recs]))):
                    imgs.setdefault(ri.record_id, []).append((ri.view, ri.sha256))
            return {"total": total, "items": [_record_out(r, imgs.get(r.record_id, [])) for r in recs]}

    @app.get(f"{API}/inspections/{{record_id}}")
    def get_inspection(record_id: str, p: Annotated[Principal, Depends(require("inspector", "supervisor"))]) -> dict:
        scope = _scope(p)
        with Session(engine) as s:
            rec = s.get(Record, record_id)
            if rec is None or (scope is not None and rec.station_id != scope):
                raise HTTPException(404, f"record {record_id} not found")
            imgs = [(ri.view, ri.sha256) for ri in s.scalars(select(RecordImage).where(RecordImage.record_id == record_id))]
            out = _record_out(rec, imgs)
            out["conflicting_versions"] = s.scalar(select(func.count()).select_from(RecordConflict)
                                                   .where(RecordConflict.record_id == record_id))
            return out

    @app.get(f"{API}/images/{{sha256}}")
    def get_image(sha256: str, p: Annotated[Principal, Depends(require("inspector", "supervisor"))],
                  thumbnail: bool = False, station_id: Annotated[str | None, Query(pattern=ID)] = None) -> Response:
        """The full image, or with ``thumbnail`` the thumbnail a station sent: the station named by
        ``station_id`` (an inspector's own by default); without one, the thumbnail when every station that
        sent one sent the same, else 409 (name the station)."""
        scope = _scope(p)
        if scope is not None and station_id not in (None, scope):
            raise HTTPException(403, f"{p.subject!r} reads only the images of station {scope!r}")
        station_id = station_id or scope
        what = "thumbnail" if thumbnail else "image"
        with Session(engine) as s:
            if station_id is not None:
                of_station = s.scalar(select(func.count()).select_from(RecordImage)
                                      .join(Record, Record.record_id == RecordImage.record_id)
                                      .where(RecordImage.sha256 == sha256, Record.station_id == station_id))
                if not of_station:
                    raise HTTPException(404, f"{what} {sha256} not on the platform")
            if not thumbnail:
                data = s.scalar(select(Image.data).where(Image.sha256 == sha256))
            else:
                q = select(Thumbnail.thumbnail).where(Thumbnail.sha256 == sha256)
                if station_id is not None:
                    q = q.where(Thumbnail.station_id == station_id)
                found = set(s.scalars(q))
                if len(found) > 1:
                    raise HTTPException(409, f"stations sent different thumbnails of {sha256}: name the station "
                                             f"(station_id)")
                data = found.pop() if found else None
            if data is None:
                raise HTTPException(404, f"{what} {sha256} not on the platform")
            return Response(data, media_type="image/jpeg" if thumbnail else "image/png")

    @app.get(f"{API}/stations/{{station_id}}/heads")
    def station_heads(station_id: str, p: Annotated[Principal, Depends(require("supervisor"))]) -> dict:
        """Every head witnessed for the station, and every head refused (``conflicts``: forks and heads that
        did not extend the last one, with the head each contradicted)."""
        with Session(engine) as s:
            heads = s.scalars(select(TreeHead).where(TreeHead.station_id == station_id).order_by(TreeHead.tree_size))
            key = s.get(StationKeyRow, station_id)
            refused = s.scalars(select(TreeHeadConflict).where(TreeHeadConflict.station_id == station_id)
                                .order_by(TreeHeadConflict.id))
            return {"station_id": station_id, "public_key_pem": key.public_key_pem if key else None,
                    "heads": [_head_json(h) for h in heads],
                    "conflicts": [{**_head_json(c), "last_tree_size": c.last_tree_size,
                                   "last_root_hash": c.last_root_hash, "reason": c.reason,
                                   "received_at": c.received_at} for c in refused]}

    @app.get(f"{API}/heads/latest")
    def latest_head(p: Annotated[Principal, Depends(require("station"))],
                    station_id: Annotated[str | None, Query(pattern=ID)] = None) -> dict:
        """The last head the platform witnessed for the calling station (an admin names one): what the next
        head's consistency proof starts from, and the station's witness against rollback."""
        sid = p.subject if p.role == "station" else station_id
        if sid is None:
            raise HTTPException(422, "name the station (station_id)")
        with Session(engine) as s:
            last = s.scalars(select(TreeHead).where(TreeHead.station_id == sid)
                             .order_by(TreeHead.tree_size.desc()).limit(1)).first()
            return {"station_id": sid, "head": _head_json(last) if last else None}

    # ---------------------------------------------------------------- pull (stations)
    # RMAs and catalogue entries travel the same way: stations pull by sequence number, an admin upserts
    # (each upsert takes the next sequence number, so a changed row is pulled again).
    def _pull(table, since: int, limit: int) -> dict:
        with Session(engine) as s:
            rows = list(s.scalars(select(table).where(table.seq > since).order_by(table.seq).limit(limit)))
            items = [{c.key: getattr(r, c.key) for c in table.__table__.columns} for r in rows]
            return {"items": items, "next_since": items[-1]["seq"] if items else since}

    def _upsert(table, rows: list[tuple[str, dict]]) -> dict:
        """``rows``: (primary key, column values) each."""
        with write_lock, Session(engine) as s, s.begin():
            serialise(s, f"seq:{table.__tablename__}")  # sequence numbers are max + 1: one upsert at a time
            seq = s.scalar(select(func.max(table.seq))) or 0
            for key, vals in rows:
                seq += 1
                vals = vals | {"seq": seq}
                row = s.get(table, key)
                if row is None:
                    s.add(table(**vals))
                else:
                    for k, v in vals.items():
                        setattr(row, k, v)
        return {"upserted": len(rows)}

    @app.get(f"{API}/rmas")
    def pull_rmas(p: Annotated[Principal, Depends(require("station", "inspector", "supervisor"))],
                  since: Annotated[int, Query(ge=0, le=INT_MAX)] = 0, limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
        return _pull(Rma, since, limit)

    @app.put(f"{API}/rmas")
    def put_rmas(body: RmasIn, p: Annotated[Principal, Depends(require("admin"))]) -> dict:
        return _upsert(Rma, [(r.order_id, r.model_dump(mode="json")) for r in body.rmas])

    @app.get(f"{API}/catalogue")
    def pull_catalogue(p: Annotated[Principal, Depends(require("station", "inspector", "supervisor"))],
                       since: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
                       limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
        return _pull(CatalogueEntry, since, limit)

    @app.put(f"{API}/catalogue")
    def put_catalogue(body: CataloguesIn, p: Annotated[Principal, Depends(require("admin"))]) -> dict:
        return _upsert(CatalogueEntry, [(it.sku, it.model_dump()) for it in body.items])

    # ---------------------------------------------------------------- aggregates
    def _shares(decision_json: str) -> list[dict] | None:
        """The liability shares of a stored decision; None when it is malformed (stored before validation)."""
        try:
            return check_decision(_loads(decision_json))["liability"]
        except ValueError:
            return None

    def _aggregate(group_col, party: Party) -> list[dict]:
        """Over the current version of every record: a record overridden by its own station or on the platform
        is replaced by its override (an override from another station replaces nothing). A stored decision
        that is malformed counts as an inspection with no liability (``malformed``), never an error."""
        with Session(engine) as s:
            by, orig = aliased(Record), aliased(Record)
            overridden = (select(by.overrides).join(orig, orig.record_id == by.overrides)
                          .where(or_(by.source == "platform", by.station_id == orig.station_id)))
            rows = s.execute(select(group_col, Record.reason, Record.decision_json)
                             .where(Record.record_id.not_in(overridden), group_col.is_not(None))).all()
        groups: dict[str, dict] = {}
        for key, reason, decision_json in rows:
            g = groups.setdefault(key, {"inspections": 0, "by_reason": {}, "attributed": 0, "malformed": 0,
                                        "liability_totals": {pp.value: 0.0 for pp in Party}})
            g["inspections"] += 1
            g["by_reason"][reason] = g["by_reason"].get(reason, 0) + 1
            shares = _shares(decision_json)
            if shares is None:
                g["malformed"] += 1
                continue
            for sh in shares:
                g["liability_totals"][sh["party"]] += float(sh["share"])
            if any(sh["party"] == party.value and sh["share"] > 0 for sh in shares):
                g["attributed"] += 1
        out = []
        for key in sorted(groups):
            g = groups[key]
            n = g["inspections"]
            out.append({
                "id": key, "inspections": n,
                "return_share_by_reason": {r: {"count": c, "share": round(c / n, 4)}
                                           for r, c in sorted(g["by_reason"].items())},
                f"{party.value}_attributed_share": round(g["attributed"] / n, 4),
                "liability_totals": {k: round(v, 4) for k, v in g["liability_totals"].items()},
                **({"malformed_decisions": g["malformed"]} if g["malformed"] else {}),
            })
        return out

    @app.get(f"{API}/aggregates/brands")
    def brand_aggregates(p: Annotated[Principal, Depends(require("supervisor"))]) -> dict:
        """Per brand: returns by reason, share of returns attributed to the brand (defects), liability totals."""
        return {"brands": _aggregate(Record.brand, Party.BRAND)}

    @app.get(f"{API}/aggregates/streamers")
    def streamer_aggregates(p: Annotated[Principal, Depends(require("supervisor"))]) -> dict:
        """Per streamer: returns by reason, share attributed to the streamer, liability totals."""
        return {"streamers": _aggregate(Record.streamer, Party.STREAMER)}

    # ---------------------------------------------------------------- admin
    def _token_json(t: Token) -> dict:
        return {"id": t.token_hash, "role": t.role, "subject": t.subject, "station_id": t.station_id,
                "created_at": t.created_at, "expires_at": t.expires_at, "revoked": bool(t.revoked),
                "expired": _expired(t.expires_at)}

    @app.post(f"{API}/tokens", status_code=201)
    def new_token(body: TokenIn, p: Annotated[Principal, Depends(require("admin"))]) -> dict:
        """A new token (shown once; the platform keeps its hash, which is its ``id``). Inspectors name the
        station they read (``station_id``); every token expires (``expires_in_s``, default by role)."""
        if body.role == "station" and body.station_id not in (None, body.subject):
            raise HTTPException(422, "a station token is scoped to its own station: station_id must be its subject")
        if body.role in ("supervisor", "admin") and body.station_id is not None:
            raise HTTPException(422, f"a {body.role} reads every station: no station_id")
        ttl = body.expires_in_s if body.expires_in_s is not None else DEFAULT_TTL_S[body.role]
        token = create_token(engine, body.role, body.subject, station_id=body.station_id, expires_in_s=ttl)
        with Session(engine) as s:
            row = s.get(Token, hash_token(token))
            return {"token": token, **_token_json(row)}

    @app.get(f"{API}/tokens")
    def list_tokens(p: Annotated[Principal, Depends(require("admin"))],
                    subject: Annotated[str | None, Query(max_length=128)] = None) -> dict:
        """Every token (never its text): id, role, subject, scope, expiry, revoked."""
        with Session(engine) as s:
            q = select(Token).order_by(Token.created_at, Token.token_hash)
            if subject is not None:
                q = q.where(Token.subject == subject)
            return {"tokens": [_token_json(t) for t in s.scalars(q)]}

    @app.delete(f"{API}/tokens/current")
    def revoke_current(p: Annotated[Principal, Depends(principal)]) -> dict:
        with write_lock, Session(engine) as s, s.begin():
            row = s.get(Token, p.token_id)
            if row is not None:
                row.revoked = True
        return {"revoked": True, "id": p.token_id}

    @app.delete(f"{API}/tokens/{{token_id}}")
    def revoke_token(token_id: Annotated[str, Path(pattern=SHA256)],
                     p: Annotated[Principal, Depends(require("admin"))]) -> dict:
        """An admin revokes anyone's token by its id; effective at the next request (tokens are not cached)."""
        with write_lock, Session(engine) as s, s.begin():
            row = s.get(Token, token_id)
            if row is None:
                raise HTTPException(404, f"token {token_id} not found")
            row.revoked = True
            return {"revoked": True, **_token_json(row)}

    @app.delete(f"{API}/tokens")
    def revoke_subject(p: Annotated[Principal, Depends(require("admin"))],
                       subject: Annotated[str, Query(min_length=1, max_length=128)]) -> dict:
        """Revoke every token of ``subject`` (a station or a user), e.g. a station that was stolen."""
        with write_lock, Session(engine) as s, s.begin():
            rows = list(s.scalars(select(Token).where(Token.subject == subject, Token.revoked.is_(False))))
            for row in rows:
                row.revoked = True
            return {"revoked": len(rows), "subject": subject}

    return app
