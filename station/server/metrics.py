"""The platform's Prometheus metrics: what this process counted since it started (records received by station
and grade, batches, batch latency, refused heads, 4xx/5xx answers) and, read at each scrape, what the
database holds (records by station and grade: right across restarts and across processes).

``GET /metrics`` needs ``Authorization: Bearer`` with an admin token or the metrics token given to
``create_app(metrics_token=...)`` (a scrape-only secret: it reads no records). Counters are per process: with
several platform processes, scrape each one (Prometheus sums them).
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from station.metrics import CONTENT_TYPE, Counter, Histogram, gauge, render
from station.server.db import ReadSession
from station.server.models import Record
from station.server.payloads import API

BATCH_PATH = f"{API}/records/batch"


class PlatformMetrics:
    def __init__(self) -> None:
        self.records_received = Counter("platform_records_received_total", "Records stored from stations' "
                                        "batches (new record ids; retries not counted)", ("station_id", "grade"))
        self.record_conflicts = Counter("platform_record_conflicts_total", "Records received in another version "
                                        "than the one stored (kept apart, never applied)", ("station_id",))
        self.batches = Counter("platform_batches_total", "Record batches answered, by outcome (stored, "
                               "head_refused)", ("station_id", "outcome"))
        self.batch_seconds = Histogram("platform_batch_duration_seconds", "Time from a batch request's arrival "
                                       "to its answer, whatever the answer")
        self.heads_refused = Counter("platform_heads_refused_total", "Signed tree heads refused (fork: proven "
                                     "not to extend the last head; else: no proof from the right size)",
                                     ("station_id", "fork"))
        self.responses = Counter("platform_http_error_responses_total", "Answers with a 4xx or 5xx status",
                                 ("code",))

    def families(self):
        return [self.records_received.family(), self.record_conflicts.family(), self.batches.family(),
                self.batch_seconds.family(), self.heads_refused.family(), self.responses.family()]


class StatusCountingMiddleware:
    """Pure ASGI, outside the auth middleware (its 401s and 413s count too): counts 4xx/5xx answers, times
    record batches, and counts a handler's unhandled exception as the 500 it becomes."""

    def __init__(self, app, metrics: PlatformMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status: int | None = None

        async def watching_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception:
            status = status or 500
            raise
        finally:
            if status is not None and status >= 400:
                self.metrics.responses.inc(str(status))
            if scope["path"] == BATCH_PATH and scope.get("method") == "POST":
                self.metrics.batch_seconds.observe(time.perf_counter() - started)


def platform_metrics(request: Request) -> PlatformMetrics:
    return request.app.state.metrics


Metrics = Annotated[PlatformMetrics, Depends(platform_metrics)]


def scraper(request: Request) -> None:
    """An admin token or the metrics token; 401 otherwise (403 for a valid token of another role)."""
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not token:
        raise HTTPException(401, "missing bearer token: scrape with the metrics token or an admin token",
                            headers={"WWW-Authenticate": "Bearer"})
    expected = request.app.state.metrics_token
    if expected and secrets.compare_digest(token.encode(), expected.encode()):
        return
    try:
        p = request.app.state.token_lookup(token)
    except SQLAlchemyError:
        raise HTTPException(503, "platform database unavailable, retry later") from None
    if p is None:
        raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    if p.role != "admin":
        raise HTTPException(403, f"role {p.role!r} may not read the metrics (needs admin or the metrics token)")


router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(scraper)])
def metrics(m: Metrics, s: ReadSession) -> Response:
    stored = s.execute(select(Record.station_id, Record.grade, func.count()).group_by(Record.station_id, Record.grade)
                       .order_by(Record.station_id, Record.grade)).all()
    families = m.families() + [gauge("platform_records", "Records the platform holds, by station and grade "
                                     "(overrides included)",
                                     [((("station_id", sid), ("grade", g)), n) for sid, g, n in stored])]
    return Response(render(families), media_type=CONTENT_TYPE)
