"""Records: stations push inspections and overrides in batches (with thumbnails and a signed head),
supervisors override on the platform, inspectors and supervisors read.

Scope: a station writes only its own records, overrides only its own records and thumbnails only its own
images (each station's thumbnails are kept apart); an inspector reads only the station its token names."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from station.evidence import leaf_hash, record_leaf_data
from station.server.auth import Principal, read_scope, require
from station.server.db import Db, ReadSession, insert_missing, serialise, utc_now
from station.server.metrics import Metrics
from station.server.models import Image, Record, RecordConflict, RecordImage, Thumbnail, TreeHeadConflict
from station.server.payloads import API, INT_MAX, BatchIn, OverrideIn, RecordIn, _loads, check_decision, decode_b64
from station.server.routers.heads import HeadRefused, witness_head

router = APIRouter(prefix=API, tags=["records"])


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


@router.post("/records/batch")
def push_records(batch: BatchIn, p: Annotated[Principal, Depends(require("station"))], db: Db, m: Metrics) -> dict:
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
    thumbs = {sha: decode_b64(b, f"thumbnail {sha}", 512 * 1024) for sha, b in batch.thumbnails.items()}
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
        with db.write() as s:
            serialise(s, *(f"station:{sid}" for sid in stations | ({station_id} if station_id else set())))
            res, created, conflicted = store_batch(s, batch, ids, in_batch, thumbs, station_id, now)
            if batch.head is not None:
                res["head"] = witness_head(s, batch, station_id)
    except HeadRefused as refused:
        c = refused.conflict
        refused_station, fork = c.station_id, "true" if refused.body["fork"] else "false"
        with db.write() as s:
            serialise(s, f"station:{c.station_id}")
            seen = s.scalar(select(func.count()).select_from(TreeHeadConflict).where(
                TreeHeadConflict.station_id == c.station_id, TreeHeadConflict.tree_size == c.tree_size,
                TreeHeadConflict.root_hash == c.root_hash, TreeHeadConflict.signature == c.signature,
                TreeHeadConflict.last_tree_size == c.last_tree_size))
            if not seen:  # a station retrying the same refused head is kept once
                s.add(c)
        m.heads_refused.inc(refused_station, fork)  # read before the commit: ``c`` is expired after it
        m.batches.inc(refused_station, "head_refused")
        return JSONResponse(refused.body, status_code=409)
    # counted once committed: a batch that failed stored nothing
    for row in created:
        m.records_received.inc(row["station_id"], row["grade"])
    for sid, n in conflicted.items():
        m.record_conflicts.inc(sid, by=n)
    m.batches.inc(station_id or "mixed", "stored")
    return res


def store_batch(s: Session, batch: BatchIn, ids: list[str], in_batch: dict[str, str], thumbs: dict[str, bytes],
                station_id: str | None, now: str) -> tuple[dict, list[dict], dict[str, int]]:
    """Store what is new; returns the answer, the rows created and the conflicts per station."""
    existing: dict[str, Record] = {}
    wanted = ids + [r.overrides for r in batch.records if r.overrides and r.overrides not in in_batch]
    for chunk in range(0, len(wanted), 500):
        for rec in s.scalars(select(Record).where(Record.record_id.in_(wanted[chunk:chunk + 500]))):
            existing[rec.record_id] = rec
    new_rows, new_imgs, conflicts = [], [], 0
    conflicted: dict[str, int] = {}  # station -> records received in another version
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
            conflicted[r.station_id] = conflicted.get(r.station_id, 0) + 1
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
    res = {"created": len(new_rows), "existing": len(batch.records) - len(new_rows) - conflicts,
           "conflicts": conflicts}
    return res, new_rows, conflicted


@router.post("/overrides", status_code=201)
def create_override(body: OverrideIn, p: Annotated[Principal, Depends(require("supervisor"))], db: Db) -> dict:
    """A supervisor override is a new record pointing at the one it overrides; the original is kept."""
    with db.write() as s:
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


@router.get("/inspections")
def list_inspections(p: Annotated[Principal, Depends(require("inspector", "supervisor"))], s: ReadSession,
                     order_id: str | None = None, brand: str | None = None, streamer: str | None = None,
                     station_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     offset: Annotated[int, Query(ge=0, le=INT_MAX)] = 0) -> dict:
    scope = read_scope(p)
    if scope is not None and station_id not in (None, scope):
        raise HTTPException(403, f"{p.subject!r} reads only the records of station {scope!r}")
    station_id = station_id or scope
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


@router.get("/inspections/{record_id}")
def get_inspection(record_id: str, p: Annotated[Principal, Depends(require("inspector", "supervisor"))],
                   s: ReadSession) -> dict:
    scope = read_scope(p)
    rec = s.get(Record, record_id)
    if rec is None or (scope is not None and rec.station_id != scope):
        raise HTTPException(404, f"record {record_id} not found")
    imgs = [(ri.view, ri.sha256) for ri in s.scalars(select(RecordImage).where(RecordImage.record_id == record_id))]
    out = _record_out(rec, imgs)
    out["conflicting_versions"] = s.scalar(select(func.count()).select_from(RecordConflict)
                                           .where(RecordConflict.record_id == record_id))
    return out
