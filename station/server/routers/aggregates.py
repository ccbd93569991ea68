"""Aggregates for supervisors: per brand and per streamer, returns by reason, the share attributed to the
party and liability totals, over the current version of every record."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from station.domain import Party
from station.server.auth import Principal, require
from station.server.db import ReadSession
from station.server.models import Record
from station.server.payloads import API, _loads, check_decision

router = APIRouter(prefix=API, tags=["aggregates"])


def _shares(decision_json: str) -> list[dict] | None:
    """The liability shares of a stored decision; None when it is malformed (stored before validation)."""
    try:
        return check_decision(_loads(decision_json))["liability"]
    except ValueError:
        return None


def _aggregate(s: Session, group_col, party: Party) -> list[dict]:
    """Over the current version of every record: a record overridden by its own station or on the platform
    is replaced by its override (an override from another station replaces nothing). A stored decision
    that is malformed counts as an inspection with no liability (``malformed``), never an error."""
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


@router.get("/aggregates/brands")
def brand_aggregates(p: Annotated[Principal, Depends(require("supervisor"))], s: ReadSession) -> dict:
    """Per brand: returns by reason, share of returns attributed to the brand (defects), liability totals."""
    return {"brands": _aggregate(s, Record.brand, Party.BRAND)}


@router.get("/aggregates/streamers")
def streamer_aggregates(p: Annotated[Principal, Depends(require("supervisor"))], s: ReadSession) -> dict:
    """Per streamer: returns by reason, share attributed to the streamer, liability totals."""
    return {"streamers": _aggregate(s, Record.streamer, Party.STREAMER)}
