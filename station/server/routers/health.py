"""Liveness (``/healthz``, no token) and who a token is (``/api/v1/whoami``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from station.server.auth import Principal, principal
from station.server.payloads import API

router = APIRouter(tags=["health"])


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict:
    return {"ok": True}


@router.get(f"{API}/whoami")
def whoami(p: Annotated[Principal, Depends(principal)]) -> dict:
    return p.public()
