"""Platform schema migrations (alembic, station/server/migrations): an empty database upgraded to head has
exactly the tables and columns of the SQLAlchemy models, the server runs the upgrade at start, a second start
changes nothing, a database made by the old ``create_all`` is adopted, and a failed upgrade leaves no half
schema. On SQLite and on PostgreSQL (tests/postgres_support.py: a throwaway cluster, or
STATION_TEST_POSTGRES_URL; skipped with the reason when neither is there)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError, ProgrammingError

from station.server.api import create_app, create_token, make_engine
from station.server.models import Base
from station.server.runner import ServerThread
from station.server.schema import SchemaError, current_revision, head_revision, upgrade
from tests.postgres_support import BACKENDS, backend_url, postgres_server  # noqa: F401 - a fixture


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    return backend_url(request, tmp_path)


def schema_differences(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def columns(engine) -> dict[str, list[tuple[str, str, bool]]]:
    insp = inspect(engine)
    return {t: [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)]
            for t in sorted(insp.get_table_names())}


def test_an_empty_database_upgraded_to_head_matches_the_models(db_url):
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision()
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
        assert schema_differences(engine) == []
        for name, table in Base.metadata.tables.items():
            got = {c["name"] for c in inspect(engine).get_columns(name)}
            assert got == {c.name for c in table.columns}, name
    finally:
        engine.dispose()


def test_the_server_migrates_at_start_and_a_second_start_changes_nothing(db_url):
    engine = make_engine(db_url)
    try:
        with ServerThread(create_app(engine=engine)):  # first start: empty database -> head
            pass
        assert current_revision(engine) == head_revision()
        before = columns(engine)
        token = create_token(engine, "admin", "root")
        with ServerThread(create_app(engine=engine)) as srv:  # second start: nothing to do, data kept
            r = httpx.get(f"{srv.url}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert r.status_code == 200 and r.json() == {"role": "admin", "subject": "root"}
        assert columns(engine) == before
        assert current_revision(engine) == head_revision()
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_a_database_made_by_create_all_before_migrations_is_adopted(db_url):
    engine = make_engine(db_url)
    try:
        Base.metadata.create_all(engine)
        token = create_token(engine, "station", "st-1")
        assert upgrade(engine) == head_revision()
        assert schema_differences(engine) == []
        with ServerThread(create_app(engine=engine)) as srv:
            r = httpx.get(f"{srv.url}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert r.json() == {"role": "station", "subject": "st-1"}
    finally:
        engine.dispose()


def test_a_failed_upgrade_leaves_no_half_schema(db_url):
    # A stray table that the initial migration creates last: the upgrade fails there, after the other
    # CREATE TABLEs ran; they run in one transaction (BEGIN IMMEDIATE on SQLite, PostgreSQL's transactional
    # DDL), so none of them stays.
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE catalogue (x INTEGER)")
        with pytest.raises((OperationalError, ProgrammingError), match="already exists"):
            upgrade(engine)
        assert set(inspect(engine).get_table_names()) == {"catalogue"}
        assert current_revision(engine) is None
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE catalogue")
        assert upgrade(engine) == head_revision()  # and the next start succeeds
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_a_database_from_a_newer_platform_is_refused_with_a_clear_error(db_url):
    url = db_url
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(SchemaError, match="9999.*upgrade this server"):
            upgrade(engine)
    finally:
        engine.dispose()
    proc = subprocess.run([sys.executable, "-m", "station.cli", "serve-platform", "--database-url", url,
                           "--port", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "revision 9999" in proc.stderr and "Traceback" not in proc.stderr
