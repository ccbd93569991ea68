"""RMAs: stations (and readers) pull them by sequence number, an admin upserts them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from station.server.auth import Principal, require
from station.server.db import Db, ReadSession
from station.server.models import Rma
from station.server.payloads import API, INT_MAX, RmasIn
from station.server.sequenced import pull, upsert

router = APIRouter(prefix=API, tags=["rmas"])


@router.get("/rmas")
def pull_rmas(p: Annotated[Principal, Depends(require("station", "inspector", "supervisor"))], s: ReadSession,
              since: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
              limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
    return pull(s, Rma, since, limit)


@router.put("/rmas")
def put_rmas(body: RmasIn, p: Annotated[Principal, Depends(require("admin"))], db: Db) -> dict:
    return upsert(db, Rma, [(r.order_id, r.model_dump(mode="json")) for r in body.rmas])
