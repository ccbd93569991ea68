"""Who is asking: tokens (created, looked up, expired, revoked), the principal a token stands for, the ASGI
middleware that answers 401 (and 413) before any handler runs, and the role dependencies (``require``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from station.server.db import utc_now
from station.server.models import Token
from station.server.payloads import API, DAY_S

ROLES = ("station", "inspector", "supervisor", "admin")
MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_TTL_S = {"station": 365 * DAY_S, "inspector": 30 * DAY_S, "supervisor": 30 * DAY_S, "admin": 30 * DAY_S}
_ROLE_DEFAULT = object()


def _parse_time(value: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


def token_lookup(engine: Engine):
    """``lookup(token)``: the token's principal, read from the database on every request (no cache: a
    revocation, by this process or another one on the same database, is effective at once); None when
    unknown, revoked or expired."""

    def lookup(token: str) -> Principal | None:
        h = hash_token(token)
        with Session(engine) as s:
            row = s.get(Token, h)
        if row is None or row.revoked or _expired(row.expires_at):
            return None
        return Principal(role=row.role, subject=row.subject, token_id=h, expires_at=row.expires_at,
                         station_id=row.subject if row.role == "station" else row.station_id)

    return lookup


def read_scope(p: Principal) -> str | None:
    """The station ``p`` reads, None for all of them. Supervisors and admins read every station; an inspector
    reads only the station its token names (an inspector token without one reads no records); a record or
    image out of scope is "not found"."""
    if p.reads_all:
        return None
    if not p.station_id:
        raise HTTPException(403, f"the token of {p.subject!r} names no station: an admin issues inspector "
                                 f"tokens with station_id")
    return p.station_id
