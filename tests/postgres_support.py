"""The platform's tests run on SQLite and on PostgreSQL (issue 21, "The fleet").

PostgreSQL is, in this order: the server ``STATION_TEST_POSTGRES_URL`` names, else a throwaway cluster this
test process starts itself when PostgreSQL's ``initdb`` is installed (station/server/pgcluster.py: a Unix
socket in a temporary folder, about a second to start, one per test process, so one per pytest-xdist
worker). Each test gets a fresh, empty database of its own. Where neither exists the PostgreSQL cases are
skipped with the reason (what to install), never failed: a machine without PostgreSQL still runs the suite.

Use: ``from tests.postgres_support import BACKENDS, backend_url, postgres_server`` (the fixture must be
imported into the test module), then ``@pytest.fixture(params=BACKENDS)`` and ``backend_url(request,
tmp_path)``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from station.server.pgcluster import PostgresUnavailable, ThrowawayPostgres

BACKENDS = ["sqlite", "postgresql"]
ENV_URL = "STATION_TEST_POSTGRES_URL"


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """Where the PostgreSQL test databases are made: an external server's URL, or the throwaway cluster."""

    admin_url: str
    cluster: ThrowawayPostgres | None
    external: bool


_shared: dict[str, object] = {}  # the one cluster (or failure reason) of this test process, made on first use


def _start_shared() -> PostgresServer:
    if "server" in _shared:
        return _shared["server"]  # type: ignore[return-value]
    if "skip" in _shared:
        pytest.skip(str(_shared["skip"]))
    if os.environ.get(ENV_URL):
        server = PostgresServer(os.environ[ENV_URL], None, external=True)
    else:
        try:
            cluster = ThrowawayPostgres(durable=False).start()
        except PostgresUnavailable as exc:
            _shared["skip"] = f"PostgreSQL backend skipped: {exc} (or set {ENV_URL})"
            pytest.skip(str(_shared["skip"]))
        server = PostgresServer(cluster.url, cluster, external=False)
    _shared["server"] = server
    return server


def _stop_shared() -> None:
    server = _shared.pop("server", None)
    if isinstance(server, PostgresServer) and server.cluster is not None:
        server.cluster.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """This test process's PostgreSQL (skips with the reason when there is none)."""
    server = _start_shared()
    yield server
    _stop_shared()


def _fresh_database(server: PostgresServer) -> tuple[str, str | None]:
    """(URL of an empty database, its name to drop afterwards or None)."""
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.exc import SQLAlchemyError

    name = f"station_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return make_url(server.admin_url).set(database=name).render_as_string(hide_password=False), name
    except SQLAlchemyError:
        # The role may not create databases: fall back to emptying the one it names (as before this module;
        # then do not run two test processes against it at once).
        from station.server.models import Base

        engine = create_engine(server.admin_url)
        try:
            Base.metadata.drop_all(engine)
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        finally:
            engine.dispose()
        return server.admin_url, None
    finally:
        admin.dispose()


def _drop_database(server: PostgresServer, name: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    admin = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except SQLAlchemyError:
        pass  # left behind: harmless, named station_test_*, and gone with a throwaway cluster
    finally:
        admin.dispose()


def backend_url(request, tmp_path: Path) -> str:
    """The database URL for ``request.param`` (``sqlite`` or ``postgresql``): a new SQLite file in
    ``tmp_path``, or a new empty PostgreSQL database, dropped after the test (each is some 8 MB)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'platform.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url, name = _fresh_database(server)
    if name is not None:
        request.addfinalizer(lambda: _drop_database(server, name))
    return url
