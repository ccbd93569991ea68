"""The lifecycle every station SQLite store shares: opened explicitly, closable, usable as a context manager."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path


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


# ------------------------------------------------------------------------------------------- file modes
# The station's data is private to the account that runs it: folders it creates are 0700, its SQLite files and
# stored images 0600. Set explicitly (mkdir/open modes are masked by the umask; chmod is not).
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path, tighten: bool = False) -> Path:
    """``mkdir -p`` where every folder it creates is 0700. An existing folder is left as it is unless
    ``tighten`` (then group and other bits are cleared, when this user owns it)."""
    path = Path(path)
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by another process: not ours to change
        os.chmod(d, PRIVATE_DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a folder")
    if tighten and not missing:
        clear_group_other(path)
    return path


def clear_group_other(path: Path, fd: int | None = None) -> None:
    try:
        st = os.fstat(fd) if fd is not None else os.stat(path)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            if fd is not None:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o077)
            else:
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
    except OSError:
        pass  # not ours to change (another owner, a read-only mount): left as it is


def private_file(path: Path, create: bool = True) -> None:
    """Make sure ``path`` is a file only its owner can read: created empty with 0600 when missing (``create``),
    an existing looser one tightened (group and other bits cleared)."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if not create:
            return
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
            os.fchmod(fd, PRIVATE_FILE_MODE)  # exactly 0600, whatever the umask
        except FileExistsError:
            fd = os.open(path, flags)
    try:
        clear_group_other(path, fd)
    finally:
        os.close(fd)


def private_sqlite_files(db_path: Path) -> None:
    """Before ``sqlite3.connect``: the database 0600 (SQLite gives its -wal and -shm files the database's mode),
    and any existing looser -wal, -shm or -journal file tightened."""
    private_file(db_path)
    for suffix in ("-wal", "-shm", "-journal"):
        private_file(Path(f"{db_path}{suffix}"), create=False)
