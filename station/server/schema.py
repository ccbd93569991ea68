"""Platform database schema management: alembic migrations (``station/server/migrations``), run at start.

``upgrade(engine)`` brings any database to the newest revision; on a database already there it changes
nothing. The whole upgrade is one transaction: ``BEGIN IMMEDIATE`` on SQLite (so two servers starting at
once on one file take turns, and a crash mid-upgrade leaves the previous schema), and an advisory lock on
PostgreSQL (so several platform processes starting together migrate once).

A database created before migrations existed (``create_all``, schema = revision 0001) is adopted: it is
stamped 0001 and upgraded from there.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema ``create_all`` made before migrations existed
_PG_LOCK_KEY = 0x5354_4E50  # arbitrary, constant: "STNP"


class SchemaError(RuntimeError):
    """The platform database cannot be brought to this server's schema; the message says why."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic Config for this package's migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _begin(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # pysqlite starts transactions only before DML; take the write lock before any DDL instead.
        conn.connection.driver_connection.isolation_level = None
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade the platform database to ``revision``; returns the revision it is at afterwards."""
    with engine.connect() as conn:
        driver_conn = conn.connection.driver_connection
        isolation = getattr(driver_conn, "isolation_level", None) if conn.dialect.name == "sqlite" else None
        try:
            _begin(conn)
            names = set(inspect(conn).get_table_names())
            cfg = alembic_config(conn)
            script = ScriptDirectory.from_config(cfg)
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None:
                try:
                    script.get_revision(current)
                except CommandError:
                    raise SchemaError(f"the platform database is at schema revision {current}, which this server "
                                      f"does not know (its newest is {script.get_current_head()}): it was "
                                      f"migrated by a newer platform version; upgrade this server") from None
            if "alembic_version" not in names and "tokens" in names:
                command.stamp(cfg, BASELINE)  # made by create_all before migrations: that is revision 0001
            try:
                command.upgrade(cfg, revision)
            except CommandError as exc:
                raise SchemaError(f"cannot upgrade the platform database to {revision}: {exc}") from None
            rev = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
        finally:
            if conn.in_transaction():
                conn.rollback()
            if conn.dialect.name == "sqlite":
                driver_conn.isolation_level = isolation
    return rev
