"""Images and thumbnails: stations upload full images (content-addressed, idempotent); inspectors and
supervisors read an image or a station's thumbnail of it, within their scope."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy import func, select, update

from station.server.auth import Principal, read_scope, require
from station.server.db import Db, ReadSession, insert_missing, utc_now
from station.server.models import Image, Record, RecordImage, Thumbnail
from station.server.payloads import API, ID, ImagesIn, decode_b64

router = APIRouter(prefix=API, tags=["images"])


@router.post("/images/batch")
def push_images(body: ImagesIn, p: Annotated[Principal, Depends(require("station"))], db: Db) -> dict:
    """Full images, idempotent by content hash; each must hash to its name."""
    now = utc_now()
    decoded = {}
    for im in body.images:
        raw = decode_b64(im.data_b64, f"image {im.sha256}", 32 * 1024 * 1024)
        if hashlib.sha256(raw).hexdigest() != im.sha256:
            raise HTTPException(422, f"image {im.sha256}: content does not hash to its name")
        decoded[im.sha256] = raw
    with db.write() as s:
        stored = 0
        have = dict(s.execute(select(Image.sha256, Image.data.is_(None))
                              .where(Image.sha256.in_(list(decoded)))).all()) if decoded else {}
        # Content-addressed: another station (or platform process) may store the same image meanwhile;
        # whoever is first stores it, the others find it there.
        insert_missing(s, Image, [{"sha256": sha, "data": raw, "size": len(raw), "received_at": now}
                                  for sha, raw in decoded.items() if sha not in have])
        stored += sum(sha not in have for sha in decoded)
        for sha in sorted(sha for sha, placeholder in have.items() if placeholder):
            res = s.execute(update(Image).where(Image.sha256 == sha, Image.data.is_(None))
                            .values(data=decoded[sha], size=len(decoded[sha])))
            stored += res.rowcount
    return {"stored": stored, "existing": len(decoded) - stored}


@router.get("/images/{sha256}")
def get_image(sha256: str, p: Annotated[Principal, Depends(require("inspector", "supervisor"))], s: ReadSession,
              thumbnail: bool = False, station_id: Annotated[str | None, Query(pattern=ID)] = None) -> Response:
    """The full image, or with ``thumbnail`` the thumbnail a station sent: the station named by
    ``station_id`` (an inspector's own by default); without one, the thumbnail when every station that
    sent one sent the same, else 409 (name the station)."""
    scope = read_scope(p)
    if scope is not None and station_id not in (None, scope):
        raise HTTPException(403, f"{p.subject!r} reads only the images of station {scope!r}")
    station_id = station_id or scope
    what = "thumbnail" if thumbnail else "image"
    if station_id is not None:
        of_station = s.scalar(select(func.count()).select_from(RecordImage)
                              .join(Record, Record.record_id == RecordImage.record_id)
                              .where(RecordImage.sha256 == sha256, Record.station_id == station_id))
        if not of_station:
            raise HTTPException(404, f"{what} {sha256} not on the platform")
    if not thumbnail:
        data = s.scalar(select(Image.data).where(Image.sha256 == sha256))
    else:
        q = select(Thumbnail.thumbnail).where(Thumbnail.sha256 == sha256)
        if station_id is not None:
            q = q.where(Thumbnail.station_id == station_id)
        found = set(s.scalars(q))
        if len(found) > 1:
            raise HTTPException(409, f"stations sent different thumbnails of {sha256}: name the station "
                                     f"(station_id)")
        data = found.pop() if found else None
    if data is None:
        raise HTTPException(404, f"{what} {sha256} not on the platform")
    return Response(data, media_type="image/jpeg" if thumbnail else "image/png")
