"""Signed tree heads: witnessing a station's head (called from a record batch) and reading the heads held.

A station's signed tree head is stored only when it extends the last head the platform holds, shown by an
RFC 9162 consistency proof; a fork or a head that does not extend is refused (``HeadRefused``: a 409) and kept
(``tree_head_conflicts``) next to the head it contradicts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from station.evidence import EvidenceError, SignedTreeHead, key_id_of, load_public_key, verify_consistency
from station.server.auth import Principal, require
from station.server.db import ReadSession, utc_now
from station.server.models import StationKeyRow, TreeHead, TreeHeadConflict
from station.server.payloads import API, ID, BatchIn

router = APIRouter(prefix=API, tags=["heads"])


class HeadRefused(Exception):
    def __init__(self, body: dict, conflict: TreeHeadConflict | None = None) -> None:
        super().__init__(body["detail"])
        self.body, self.conflict = body, conflict


def head_json(h: TreeHead) -> dict:
    return {c: getattr(h, c) for c in ("tree_size", "root_hash", "signed_at", "key_id", "signature")}


def witness_head(s: Session, batch: BatchIn, station_id: str) -> dict:
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
                "platform_head": head_json(against), "fork": fork}
        conflict = TreeHeadConflict(station_id=station_id, **head.to_json(), last_tree_size=against.tree_size,
                                    last_root_hash=against.root_hash, reason=reason, received_at=utc_now())
        raise HeadRefused(body, conflict)

    if last is None:
        s.add(TreeHead(station_id=station_id, **head.to_json()))
        return head.to_json()
    same = s.get(TreeHead, (station_id, head.tree_size))
    if same is not None:
        if same.root_hash != head.root_hash:
            refuse(f"a fork: the platform holds a different root for size {head.tree_size}", same)
        return head_json(last)
    if head.tree_size < last.tree_size:
        # An older head arriving late (a slower request of the same station): its place in the log cannot
        # be proven from here, so it is not stored; the later head already witnessed stands.
        return head_json(last)
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


@router.get("/stations/{station_id}/heads")
def station_heads(station_id: str, p: Annotated[Principal, Depends(require("supervisor"))],
                  s: ReadSession) -> dict:
    """Every head witnessed for the station, and every head refused (``conflicts``: forks and heads that
    did not extend the last one, with the head each contradicted)."""
    heads = s.scalars(select(TreeHead).where(TreeHead.station_id == station_id).order_by(TreeHead.tree_size))
    key = s.get(StationKeyRow, station_id)
    refused = s.scalars(select(TreeHeadConflict).where(TreeHeadConflict.station_id == station_id)
                        .order_by(TreeHeadConflict.id))
    return {"station_id": station_id, "public_key_pem": key.public_key_pem if key else None,
            "heads": [head_json(h) for h in heads],
            "conflicts": [{**head_json(c), "last_tree_size": c.last_tree_size,
                           "last_root_hash": c.last_root_hash, "reason": c.reason,
                           "received_at": c.received_at} for c in refused]}


@router.get("/heads/latest")
def latest_head(p: Annotated[Principal, Depends(require("station"))],
                s: ReadSession, station_id: Annotated[str | None, Query(pattern=ID)] = None) -> dict:
    """The last head the platform witnessed for the calling station (an admin names one): what the next
    head's consistency proof starts from, and the station's witness against rollback."""
    sid = p.subject if p.role == "station" else station_id
    if sid is None:
        raise HTTPException(422, "name the station (station_id)")
    last = s.scalars(select(TreeHead).where(TreeHead.station_id == sid)
                     .order_by(TreeHead.tree_size.desc()).limit(1)).first()
    return {"station_id": sid, "head": head_json(last) if last else None}
