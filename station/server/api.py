"""The platform API (FastAPI), everything under ``/api/v1/``.

Auth: ``Authorization: Bearer <token>``. Tokens belong to a station (role ``station``, subject = station id)
or a user (``inspector``, ``supervisor``, ``admin``). The auth middleware answers 401 before any handler
runs, so a request without a valid token never has its body read; a role acting beyond its rights gets 403.
Bad payloads get 4xx with a message (422 from validation, 409 on conflicts), never a 500.

Scope: a station writes only its own records, overrides only its own records and thumbnails only its own
images (each station's thumbnails are kept apart); an inspector token names one station (``station_id``) and
reads only that station's records and images; supervisors and admins read everything. Every token is looked
up in the database on every request (a revocation is effective at once) and expires (``expires_at``).

Witnessing: a station's signed tree head is stored only when it extends the last head the platform holds,
shown by an RFC 9162 consistency proof (``consistency`` in the batch); a fork or a head that does not extend
is answered 409 and kept (``tree_head_conflicts``) next to the head it contradicts.

Limits: bodies over 64 MiB get 413, with or without Content-Length (chunked bodies are counted as they are
read); integers beyond the database's range get 422; ``decision_json`` must be a decision.

Layout: ``db`` (engine, write discipline, session dependencies), ``auth`` (tokens, the auth middleware, role
dependencies), ``payloads`` (request bodies), ``routers/`` (one APIRouter per resource), ``metrics``
(``GET /metrics``, Prometheus). This module builds the app and keeps the names other code imports.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from station.server import metrics as platform_metrics
from station.server.auth import (  # noqa: F401 - the names other modules and tests import from here
    DEFAULT_TTL_S,
    MAX_BODY_BYTES,
    ROLES,
    Principal,
    _AuthMiddleware,
    create_token,
    hash_token,
    principal,
    require,
    token_lookup,
)
from station.server.db import PlatformDb, init_db, insert_missing, make_engine, serialise, utc_now  # noqa: F401
from station.server.payloads import (  # noqa: F401
    API,
    ID,
    INT_MAX,
    MAX_BATCH,
    MAX_TTL_S,
    SHA256,
    BatchIn,
    CatalogueIn,
    CataloguesIn,
    ConsistencyIn,
    HeadIn,
    ImageIn,
    ImageRef,
    ImagesIn,
    OverrideIn,
    RecordIn,
    RmaIn,
    RmasIn,
    TokenIn,
    check_decision,
)
from station.server.routers import ROUTERS


async def _db_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
    if isinstance(exc, IntegrityError):
        return JSONResponse({"detail": "conflicts with stored data (duplicate or missing reference)"}, 409)
    return JSONResponse({"detail": "platform database unavailable, retry later"}, 503)


def create_app(database_url: str = "sqlite:///platform.db", engine: Engine | None = None,
               metrics_token: str | None = None) -> FastAPI:
    """Build the app. The schema is migrated to head on startup (``init_db``, alembic); no I/O here.
    ``metrics_token``: a bearer token that reads ``GET /metrics`` and nothing else (an admin token does too)."""
    if metrics_token is not None and len(metrics_token) < 16:
        raise ValueError("the metrics token needs at least 16 characters: make one with `openssl rand -hex 16`")
    engine = engine or make_engine(database_url)

    @asynccontextmanager
    async def lifespan(_app):
        init_db(engine)
        yield

    app = FastAPI(title="Returns inspection platform", version="1.0", lifespan=lifespan,
                  description="Stations push inspections, overrides and images (idempotent by record id and "
                              "content hash) and pull RMAs and catalogue updates; supervisors and admins read "
                              "per-brand and per-streamer aggregates. Auth: `Authorization: Bearer <token>`.")
    app.state.engine = engine
    app.state.db = PlatformDb(engine)
    app.state.token_lookup = token_lookup(engine)
    app.state.metrics = platform_metrics.PlatformMetrics()
    app.state.metrics_token = metrics_token
    app.add_exception_handler(SQLAlchemyError, _db_error)
    app.add_middleware(_AuthMiddleware, lookup=app.state.token_lookup)
    # added last, so outermost: the auth middleware's 401s and 413s are counted too
    app.add_middleware(platform_metrics.StatusCountingMiddleware, metrics=app.state.metrics)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(platform_metrics.router)
    return app
