"""Catalogue entries: stations (and readers) pull them by sequence number, an admin upserts them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from station.server.auth import Principal, require
from station.server.db import Db, ReadSession
from station.server.models import CatalogueEntry
from station.server.payloads import API, INT_MAX, CataloguesIn
from station.server.sequenced import pull, upsert

router = APIRouter(prefix=API, tags=["catalogue"])


@router.get("/catalogue")
def pull_catalogue(p: Annotated[Principal, Depends(require("station", "inspector", "supervisor"))], s: ReadSession,
                   since: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
                   limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
    return pull(s, CatalogueEntry, since, limit)


@router.put("/catalogue")
def put_catalogue(body: CataloguesIn, p: Annotated[Principal, Depends(require("admin"))], db: Db) -> dict:
    return upsert(db, CatalogueEntry, [(it.sku, it.model_dump()) for it in body.items])
