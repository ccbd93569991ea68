"""Alembic environment of the platform server.

Run through :func:`station.server.schema.upgrade` (server start), which passes the connection to migrate in
``config.attributes["connection"]``, already inside the transaction that holds the whole upgrade. Run by
the ``alembic`` command line (``alembic -x url=sqlite:///platform.db ...`` with a config whose
``script_location`` is this folder), it opens its own engine from ``-x url=`` or ``sqlalchemy.url``.
Logging is left to the host application (no ``fileConfig``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from station.server.models import Base

target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite: the caller runs the upgrade in one BEGIN IMMEDIATE transaction, so DDL is transactional
        # there too; a crash mid-upgrade leaves the previous schema, never half of the next one.
        transactional_ddl=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, compare_type=True,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: pass -x url=DATABASE_URL or set sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
