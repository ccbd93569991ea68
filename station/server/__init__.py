"""The platform server stations sync to: FastAPI + SQLAlchemy 2, everything under ``/api/v1/``.

``create_app(database_url)`` builds the ASGI app (no I/O until the first request or ``init_db``);
``station serve-platform`` runs it with uvicorn. SQLite by default, PostgreSQL by URL.
The schema is managed by alembic (``migrations/``), upgraded to head at every start (``schema.upgrade``).
"""
