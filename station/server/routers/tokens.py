"""Tokens: an admin issues, lists and revokes them; anyone revokes their own (``/tokens/current``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from sqlalchemy import select

from station.server.auth import DEFAULT_TTL_S, Principal, _expired, create_token, hash_token, principal, require
from station.server.db import Db, ReadSession
from station.server.models import Token
from station.server.payloads import API, SHA256, TokenIn

router = APIRouter(prefix=API, tags=["tokens"])


def _token_json(t: Token) -> dict:
    return {"id": t.token_hash, "role": t.role, "subject": t.subject, "station_id": t.station_id,
            "created_at": t.created_at, "expires_at": t.expires_at, "revoked": bool(t.revoked),
            "expired": _expired(t.expires_at)}


@router.post("/tokens", status_code=201)
def new_token(body: TokenIn, p: Annotated[Principal, Depends(require("admin"))], db: Db) -> dict:
    """A new token (shown once; the platform keeps its hash, which is its ``id``). Inspectors name the
    station they read (``station_id``); every token expires (``expires_in_s``, default by role)."""
    if body.role == "station" and body.station_id not in (None, body.subject):
        raise HTTPException(422, "a station token is scoped to its own station: station_id must be its subject")
    if body.role in ("supervisor", "admin") and body.station_id is not None:
        raise HTTPException(422, f"a {body.role} reads every station: no station_id")
    ttl = body.expires_in_s if body.expires_in_s is not None else DEFAULT_TTL_S[body.role]
    token = create_token(db.engine, body.role, body.subject, station_id=body.station_id, expires_in_s=ttl)
    with db.session() as s:
        row = s.get(Token, hash_token(token))
        return {"token": token, **_token_json(row)}


@router.get("/tokens")
def list_tokens(p: Annotated[Principal, Depends(require("admin"))], s: ReadSession,
                subject: Annotated[str | None, Query(max_length=128)] = None) -> dict:
    """Every token (never its text): id, role, subject, scope, expiry, revoked."""
    q = select(Token).order_by(Token.created_at, Token.token_hash)
    if subject is not None:
        q = q.where(Token.subject == subject)
    return {"tokens": [_token_json(t) for t in s.scalars(q)]}


@router.delete("/tokens/current")
def revoke_current(p: Annotated[Principal, Depends(principal)], db: Db) -> dict:
    with db.write() as s:
        row = s.get(Token, p.token_id)
        if row is not None:
            row.revoked = True
    return {"revoked": True, "id": p.token_id}


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: Annotated[str, Path(pattern=SHA256)],
                 p: Annotated[Principal, Depends(require("admin"))], db: Db) -> dict:
    """An admin revokes anyone's token by its id; effective at the next request (tokens are not cached)."""
    with db.write() as s:
        row = s.get(Token, token_id)
        if row is None:
            raise HTTPException(404, f"token {token_id} not found")
        row.revoked = True
        return {"revoked": True, **_token_json(row)}


@router.delete("/tokens")
def revoke_subject(p: Annotated[Principal, Depends(require("admin"))], db: Db,
                   subject: Annotated[str, Query(min_length=1, max_length=128)]) -> dict:
    """Revoke every token of ``subject`` (a station or a user), e.g. a station that was stolen."""
    with db.write() as s:
        rows = list(s.scalars(select(Token).where(Token.subject == subject, Token.revoked.is_(False))))
        for row in rows:
            row.revoked = True
        return {"revoked": len(rows), "subject": subject}
