"""The platform API (FastAPI), everything under ``/api/v1/``.

Auth: ``Authorization: Bearer <token>``. Tokens belong to a station (role ``station``, subject = station id)
or a user (``inspector``, ``supervisor``, ``admin``). The auth middleware answers 401 before any handler
runs, so a request without a valid token never has its body read; a role acting beyond its rights gets 403.
Bad payloads get 4xx with a message (422 from validation, 409 on conflicts), never a 500.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
import threading
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from station.domain import Disposition, Grade, Party, ReturnReason
from station.evidence import EvidenceError, SignedTreeHead, key_id_of, leaf_hash, load_public_key, record_leaf_data
from station.server.models import (
    CatalogueEntry,
    Image,
    Record,
    RecordConflict,
    RecordImage,
    Rma,
    StationKeyRow,
    Token,
    TreeHead,
)

API = "/api/v1"
ROLES = ("station", "inspector", "supervisor", "admin")
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_BATCH = 1000
SHA256 = r"^[0-9a-f]{64}$"
ID = r"^[A-Za-z0-9_.:-]{1,64}$"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


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
    return create_engine(url, pool_pre_ping=True)


def init_db(engine: Engine) -> str | None:
    """Bring the database to the newest schema with the package's alembic migrations (a no-op when it is
    there already); returns the revision. See station/server/schema.py."""
    from station.server.schema import upgrade

    return upgrade(engine)


def create_token(engine: Engine, role: str, subject: str, token: str | None = None) -> str:
    """Create (or re-activate) a token; returns the token text. The database keeps only its hash."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    token = token or secrets.token_urlsafe(32)
    with Session(engine) as s, s.begin():
        row = s.get(Token, hash_token(token))
        if row is None:
            s.add(Token(token_hash=hash_token(token), role=role, subject=subject, created_at=utc_now()))
        else:
            row.role, row.subject, row.revoked = role, subject, False
    return token


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
    lane: int | None = None
    confidence: float = Field(ge=0, le=1)
    model_version: str = Field(max_length=128)
    rules_fired: str = Field(max_length=4096)
    decision_json: str = Field(max_length=65536)
    findings_json: str = Field(max_length=262144)
    timings_json: str = Field(max_length=16384)
    operator: str | None = Field(None, max_length=128)
    overrides: str | None = Field(None, pattern=ID)
    override_reason: str | None = Field(None, max_length=4096)
    leaf_index: int | None = Field(None, ge=0)
    leaf_hash: str | None = Field(None, pattern=SHA256)
    images: list[ImageRef] = Field(default_factory=list, max_length=64)

    @field_validator("decision_json", "findings_json", "timings_json")
    @classmethod
    def _json(cls, v: str) -> str:
        try:
            json.loads(v)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        return v


class HeadIn(_In):
    tree_size: int = Field(ge=0)
    root_hash: str = Field(pattern=SHA256)
    signed_at: str = Field(max_length=40)
    key_id: str = Field(max_length=32)
    signature: str = Field(max_length=128)


class BatchIn(_In):
    records: list[RecordIn] = Field(max_length=MAX_BATCH)
    thumbnails: dict[str, str] = Field(default_factory=dict, description="sha256 -> base64 JPEG thumbnail")
    head: HeadIn | None = None
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
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            resp = JSONResponse({"detail": f"body over {MAX_BODY_BYTES} bytes: send smaller batches"},
                                status_code=413)
            return await resp(scope, receive, send)
        scope.setdefault("state", {})["principal"] = principal
        return await self.app(scope, receive, send)


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
    token_cache: dict[str, Principal | None] = {}
    cache_lock = threading.Lock()
    write_lock = threading.Lock()  # one writer at a time: SQLite serialises anyway, PostgreSQL gets fewer retries

    def lookup(token: str) -> Principal | None:
        h = hash_token(token)
        with cache_lock:
            if h in token_cache:
                return token_cache[h]
        with Session(engine) as s:
            row = s.get(Token, h)
        p = None if row is None or row.revoked else Principal(role=row.role, subject=row.subject)
        with cache_lock:
            if len(token_cache) > 10000:
                token_cache.clear()
            token_cache[h] = p
        return p

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
        return p.model_dump()

    # ---------------------------------------------------------------- push (stations)
    @app.post(f"{API}/records/batch")
    def push_records(batch: BatchIn, p: Annotated[Principal, Depends(require("station"))]) -> dict:
        """Push inspections and overrides; idempotent by record id. A different version of a known id is kept
        as a conflict (never applied). Each record must match its evidence-log leaf hash."""
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
        with write_lock, Session(engine) as s, s.begin():
            existing = {}
            for chunk in range(0, len(ids), 500):
                for rec in s.scalars(select(Record).where(Record.record_id.in_(ids[chunk:chunk + 500]))):
                    existing[rec.record_id] = rec
            new_rows, new_imgs, conflicts = [], [], 0
            for r in batch.records:
                row = _record_row(r, now)
                old = existing.get(r.record_id)
                if old is None:
                    new_rows.append(row)
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
                have = set(s.scalars(select(Image.sha256).where(Image.sha256.in_(list(thumbs)))))
                add = [{"sha256": k, "thumbnail": v, "size": 0, "received_at": now}
                       for k, v in thumbs.items() if k not in have]
                if add:
                    s.execute(insert(Image), add)
                for k in have:
                    s.execute(update(Image).where(Image.sha256 == k, Image.thumbnail.is_(None))
                              .values(thumbnail=thumbs[k]))
            if batch.head is not None:
                _store_head(s, p, batch, batch.records[0].station_id if batch.records else p.subject)
        return {"created": len(new_rows), "existing": len(batch.records) - len(new_rows) - conflicts,
                "conflicts": conflicts}

    def _store_head(s: Session, p: Principal, batch: BatchIn, station_id: str) -> None:
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
        latest = s.scalar(select(func.max(TreeHead.tree_size)).where(TreeHead.station_id == station_id)) or 0
        if head.tree_size < latest:
            return  # an older head arriving late: already witnessed a later one
        if s.get(TreeHead, (station_id, head.tree_size)) is None:
            s.add(TreeHead(station_id=station_id, **head.to_json()))

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
            for sha, raw in decoded.items():
                row = s.get(Image, sha)
                if row is None:
                    s.add(Image(sha256=sha, data=raw, size=len(raw), received_at=now))
                    stored += 1
                elif row.data is None:
                    row.data, row.size = raw, len(raw)
                    stored += 1
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
            decision = json.loads(orig.decision_json)
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
    @app.get(f"{API}/inspections")
    def list_inspections(p: Annotated[Principal, Depends(require("inspector", "supervisor"))],
                         order_id: str | None = None, brand: str | None = None, streamer: str | None = None,
                         station_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         offset: Annotated[int, Query(ge=0)] = 0) -> dict:
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
        with Session(engine) as s:
            rec = s.get(Record, record_id)
            if rec is None:
                raise HTTPException(404, f"record {record_id} not found")
            imgs = [(ri.view, ri.sha256) for ri in s.scalars(select(RecordImage).where(RecordImage.record_id == record_id))]
            out = _record_out(rec, imgs)
            out["conflicting_versions"] = s.scalar(select(func.count()).select_from(RecordConflict)
                                                   .where(RecordConflict.record_id == record_id))
            return out

    @app.get(f"{API}/images/{{sha256}}")
    def get_image(sha256: str, p: Annotated[Principal, Depends(require("inspector", "supervisor"))],
                  thumbnail: bool = False) -> Response:
        with Session(engine) as s:
            row = s.get(Image, sha256)
            data = None if row is None else (row.thumbnail if thumbnail else row.data)
            if data is None:
                raise HTTPException(404, f"{'thumbnail' if thumbnail else 'image'} {sha256} not on the platform")
            return Response(data, media_type="image/jpeg" if thumbnail else "image/png")

    @app.get(f"{API}/stations/{{station_id}}/heads")
    def station_heads(station_id: str, p: Annotated[Principal, Depends(require("supervisor"))]) -> dict:
        with Session(engine) as s:
            heads = s.scalars(select(TreeHead).where(TreeHead.station_id == station_id).order_by(TreeHead.tree_size))
            key = s.get(StationKeyRow, station_id)
            return {"station_id": station_id, "public_key_pem": key.public_key_pem if key else None,
                    "heads": [{c: getattr(h, c) for c in ("tree_size", "root_hash", "signed_at", "key_id",
                                                          "signature")} for h in heads]}

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
                  since: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
        return _pull(Rma, since, limit)

    @app.put(f"{API}/rmas")
    def put_rmas(body: RmasIn, p: Annotated[Principal, Depends(require("admin"))]) -> dict:
        return _upsert(Rma, [(r.order_id, r.model_dump(mode="json")) for r in body.rmas])

    @app.get(f"{API}/catalogue")
    def pull_catalogue(p: Annotated[Principal, Depends(require("station", "inspector", "supervisor"))],
                       since: Annotated[int, Query(ge=0)] = 0,
                       limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
        return _pull(CatalogueEntry, since, limit)

    @app.put(f"{API}/catalogue")
    def put_catalogue(body: CataloguesIn, p: Annotated[Principal, Depends(require("admin"))]) -> dict:
        return _upsert(CatalogueEntry, [(it.sku, it.model_dump()) for it in body.items])

    # ---------------------------------------------------------------- aggregates
    def _aggregate(group_col, party: Party) -> list[dict]:
        with Session(engine) as s:
            overridden = select(Record.overrides).where(Record.overrides.is_not(None))
            rows = s.execute(select(group_col, Record.reason, Record.decision_json)
                             .where(Record.record_id.not_in(overridden), group_col.is_not(None))).all()
        groups: dict[str, dict] = {}
        for key, reason, decision_json in rows:
            g = groups.setdefault(key, {"inspections": 0, "by_reason": {}, "attributed": 0,
                                        "liability_totals": {pp.value: 0.0 for pp in Party}})
            g["inspections"] += 1
            g["by_reason"][reason] = g["by_reason"].get(reason, 0) + 1
            shares = json.loads(decision_json).get("liability", [])
            for sh in shares:
                if sh.get("party") in g["liability_totals"]:
                    g["liability_totals"][sh["party"]] += float(sh.get("share", 0))
            if any(sh.get("party") == party.value and float(sh.get("share", 0)) > 0 for sh in shares):
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
    @app.post(f"{API}/tokens", status_code=201)
    def new_token(body: TokenIn, p: Annotated[Principal, Depends(require("admin"))]) -> dict:
        token = create_token(engine, body.role, body.subject)
        return {"token": token, "role": body.role, "subject": body.subject}

    @app.delete(f"{API}/tokens/current")
    def revoke_current(request: Request, p: Annotated[Principal, Depends(principal)]) -> dict:
        token = request.headers["authorization"][7:].strip()
        with write_lock, Session(engine) as s, s.begin():
            row = s.get(Token, hash_token(token))
            if row is not None:
                row.revoked = True
        with cache_lock:
            token_cache.pop(hash_token(token), None)
        return {"revoked": True}

    return app
