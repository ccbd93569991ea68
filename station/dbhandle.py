"""The lifecycle every station SQLite store shares: opened explicitly, closable, usable as a context manager."""

from __future__ import annotations

import sqlite3


class SqliteHandle:
    """Subclasses set ``_db`` in ``open()`` and name their error type and what they are in ``_closed_error``."""

    _db: sqlite3.Connection | None = None

    def open(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _closed_error(self) -> Exception:
        return RuntimeError(f"{type(self).__name__} is not open")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self):
        return self.open() if self._db is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise self._closed_error()
        return self._db
