"""Tables stations pull by sequence number (RMAs, catalogue entries): an admin upserts, each upsert takes the
next sequence number, so a changed row is pulled again."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from station.server.db import PlatformDb, serialise


def pull(s: Session, table, since: int, limit: int) -> dict:
    rows = list(s.scalars(select(table).where(table.seq > since).order_by(table.seq).limit(limit)))
    items = [{c.key: getattr(r, c.key) for c in table.__table__.columns} for r in rows]
    return {"items": items, "next_since": items[-1]["seq"] if items else since}


def upsert(db: PlatformDb, table, rows: list[tuple[str, dict]]) -> dict:
    """``rows``: (primary key, column values) each."""
    with db.write() as s:
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
