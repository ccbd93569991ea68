"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` into a temporary folder, ``postgres``
listening only on a Unix socket in that folder (no TCP port to collide on), removed again by ``stop()``.

PostgreSQL refuses to run as root; run as root, the cluster belongs to an unprivileged user (``nobody``).
The server is a child of this process with a parent-death signal, so a killed test run does not leave a
cluster behind. Anything that prevents a start (no ``initdb``, no psycopg, initdb failing) raises
:class:`PostgresUnavailable` whose message says why and what to install.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SUPERUSER = "station"
_PORT = 5432  # only names the socket file (.s.PGSQL.5432) in the cluster's own folder
_PR_SET_PDEATHSIG = 1
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """No throwaway PostgreSQL can be started here; the message says why."""


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb``, ``postgres`` and ``pg_ctl``: on the PATH, else Debian's
    /usr/lib/postgresql/<version>/bin (newest version first), else None."""
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).parent / "postgres").exists():
        return Path(on_path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(re.sub(r"\D", "", Path(p).parent.parent.name) or 0), reverse=True)
    for c in candidates:
        if (Path(c).parent / "postgres").exists():
            return Path(c).parent
    return None


def unavailable_reason() -> str | None:
    """Why a throwaway cluster cannot start here (None: it can be tried)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]>=3.1', the [postgres] extra)"
    if find_bin_dir() is None:
        return "PostgreSQL's initdb was not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            return "running as root and there is no 'nobody' user to run PostgreSQL as"
    return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # Fast shutdown (SIGINT) of the postmaster when the process that started it dies, however it dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
    except OSError:
        pass


class ThrowawayPostgres:
    """One PostgreSQL cluster in a temporary folder. ``start()`` runs initdb and the server and returns once it
    accepts connections; ``url`` is the SQLAlchemy URL of its ``postgres`` database; ``create_database()``
    makes a fresh empty database (one per test) and returns its URL; ``stop()`` shuts it down and deletes it.

    ``durable=False`` (tests) turns fsync off: a crash of the machine may lose the cluster, which is thrown
    away anyway. Benchmarks keep the default durability so their figures mean something."""

    def __init__(self, parent_dir: Path | None = None, durable: bool = True) -> None:
        self.parent_dir = parent_dir
        self.durable = durable
        self.root: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._uid: int | None = None
        self._gid: int | None = None

    # ----------------------------------------------------------------------- paths and urls
    @property
    def socket_dir(self) -> Path:
        if self.root is None:
            raise PostgresUnavailable("the throwaway PostgreSQL cluster is not started")
        return self.root / "sock"

    def url_of(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}&port={_PORT}"

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ----------------------------------------------------------------------- lifecycle
    def _as_owner(self) -> dict:
        return {"user": self._uid, "group": self._gid, "extra_groups": []} if self._uid is not None else {}

    def start(self, timeout_s: float = 60.0) -> "ThrowawayPostgres":
        reason = unavailable_reason()
        if reason:
            raise PostgresUnavailable(reason)
        bin_dir = find_bin_dir()
        assert bin_dir is not None
        self.root = Path(tempfile.mkdtemp(prefix="station-pg-", dir=self.parent_dir))
        data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("nobody")
            self._uid, self._gid = owner.pw_uid, owner.pw_gid
            for p in (self.root, sock):
                os.chown(p, self._uid, self._gid)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        env.pop("PGDATA", None)
        init = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
             "--locale=C", "--no-instructions"] + ([] if self.durable else ["--no-sync"]),
            capture_output=True, text=True, env=env, cwd=self.root, timeout=timeout_s, **self._as_owner())
        if init.returncode != 0:
            self._remove()
            last = (init.stderr or init.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PostgresUnavailable(f"initdb failed: {last[0]}")
        opts = ["-k", str(sock), "-p", str(_PORT), "-c", "listen_addresses=", "-c", "shared_buffers=32MB",
                "-c", "max_connections=200", "-c", "log_min_messages=warning", "-c", "logging_collector=off"]
        if not self.durable:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.root / "postgres.log", "wb")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(data), *opts], stdout=log,
                                          stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                          preexec_fn=_die_with_parent, **self._as_owner())
        finally:
            log.close()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                tail = self._log_tail()
                self._remove()
                raise PostgresUnavailable(f"postgres exited at start: {tail}")
            try:
                with psycopg.connect(host=str(self.socket_dir), port=_PORT, user=SUPERUSER, dbname="postgres",
                                     connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    tail = self._log_tail()
                    self.stop()
                    raise PostgresUnavailable(f"postgres did not accept connections in {timeout_s:.0f} s: {tail}")
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            lines = (self.root / "postgres.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        with psycopg.connect(host=str(self.socket_dir), port=_PORT, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url_of(name)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)  # fast shutdown: clients disconnected, clean stop
                try:
                    self._proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        self._remove()

    def _remove(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "ThrowawayPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
