"""The platform's database: the engine, the write discipline (``serialise``, ``insert_missing``), the schema
upgrade, and the FastAPI dependencies handlers use (``Db`` for writes, ``ReadSession`` for reads)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the server
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # A fleet's requests run side by side (one connection each, the auth lookup included): room for them.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def serialise(s: Session, *names: str) -> None:
    """Make writers of the same ``names`` (a station, a pull table) take turns across platform processes that
    share one PostgreSQL database: transaction-scoped advisory locks, released at commit or rollback, taken
    in one order (no deadlock). Without them two processes both find a record id new and one insert fails
    (a 409 to a station that only retried). SQLite has one writer per file: the write lock is taken before
    the first read instead (a write that changes nothing), so the transaction reads what the last writer
    committed; call it first in the transaction."""
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        s.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0"))
    elif dialect == "postgresql":
        for name in sorted(set(names)):
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(name)})


def insert_missing(s: Session, model, rows: list[dict]) -> None:
    """INSERT rows, skipping those whose primary key another writer stored meanwhile (content-addressed rows:
    images, thumbnails, which any station may send at the same moment)."""
    if not rows:
        return
    keys = [c.key for c in model.__table__.primary_key.columns]
    rows = sorted(rows, key=lambda r: tuple(r[k] for k in keys))  # one lock order: writers never deadlock
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - the platform runs on SQLite or PostgreSQL
        s.execute(insert(model), rows)
        return
    s.execute(dialect_insert(model).on_conflict_do_nothing(), rows)


def init_db(engine: Engine) -> str | None:
    """Bring the database to the newest schema with the package's alembic migrations (a no-op when it is
    there already); returns the revision. See station/server/schema.py."""
    from station.server.schema import upgrade

    return upgrade(engine)


class PlatformDb:
    """The engine and the process's write lock. SQLite: one writer at a time (it serialises writers anyway;
    this spares them busy waits). PostgreSQL: the writes of different stations run side by side;
    ``serialise`` orders those of the same station or pull table, in this process and in every other one on
    the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.write_lock = threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    def session(self) -> Session:
        return Session(self.engine)

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction under the write lock: committed when the block ends, rolled back on error."""
        with self.write_lock, Session(self.engine) as s, s.begin():
            yield s


def platform_db(request: Request) -> PlatformDb:
    return request.app.state.db


def read_session(db: Annotated[PlatformDb, Depends(platform_db)]) -> Iterator[Session]:
    """A session for a handler that only reads (no transaction to commit); closed after the handler."""
    with db.session() as s:
        yield s


Db = Annotated[PlatformDb, Depends(platform_db)]
ReadSession = Annotated[Session, Depends(read_session)]
