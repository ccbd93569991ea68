"""Issue 21: CSV export must not hand a spreadsheet formulas from catalogue or RMA fields (OWASP CSV injection),
and a full disk (ENOSPC, EDQUOT), or a read-only file system, during export, inspection or sync is one clear
line with exit 2 and nothing half-written."""

from __future__ import annotations

import csv
import errno
import io
import os
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from station.domain import Decision, Disposition, Grade, ReturnReason, ReturnRequest
from station.records import StationStore, StoreError, csv_safe, export_rows, record_from_parts, write_export_file
from station.server.api import create_app, create_token, init_db, make_engine
from station.server.runner import ServerThread
from station.sync import SyncClient, SyncError, SyncSettings
from vision.camera import StagedItem, SyntheticCamera

HOSTILE = {"order_id": "=cmd|' /C calc'!A0", "streamer": "+SUM(A1:A9)", "brand": "@HYPERLINK(\"http://x\")",
           "carrier": "-2+3", "unit_code": "-U-1", "channel": "=live"}


def _cli(*args: str):
    from station.cli import app

    res = CliRunner().invoke(app, list(args), catch_exceptions=True, env={"COLUMNS": "400"})
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"traceback: {type(res.exception).__name__}: {res.exception}")
    return res


def _store_with_records(path, hostile: bool = True) -> StationStore:
    store = StationStore(path).open()
    sha = store.put_image(np.full((24, 24, 3), 90, np.uint8)).sha256
    dec = Decision(Grade.B, Disposition.OPEN_BOX, (), False, ("G-B",))
    fields = HOSTILE if hostile else {"order_id": "O-1"}
    req = ReturnRequest(sku="=SKU()", reason=ReturnReason.WRONG_ITEM, **fields) if hostile else \
        ReturnRequest("O-1", "SKU-1", ReturnReason.WRONG_ITEM)
    rec = record_from_parts(req, [], dec, 3, [("front", sha)], "m", "st-1", {}, operator="=op")
    store.append(rec)
    store.override(rec.record_id, "-sue", "=1+1 looked again", grade=Grade.C)
    if hostile:  # a typed reason may start with a tab or a carriage return (identifiers may not: bad scans)
        store.override(rec.record_id, "sue", "\t=1+1", grade=Grade.C)
        store.override(rec.record_id, "sue", "\r@SUM(1)", grade=Grade.C)
    return store


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_quoted_as_text(tmp_path):
    store = _store_with_records(tmp_path / "st" / "station.db")
    buf = io.StringIO()
    assert export_rows(store.rows(), "csv", buf) == 4
    store.close()
    rows = list(csv.DictReader(io.StringIO(buf.getvalue(), newline="")))
    first, override, tab, cr = rows
    assert tab["override_reason"] == "'\t=1+1" and cr["override_reason"] == "'\r@SUM(1)"
    for field, value in HOSTILE.items():
        assert first[field] == "'" + value, field
    assert first["sku"] == "'=SKU()" and first["operator"] == "'=op"
    assert override["operator"] == "'-sue" and override["override_reason"] == "'=1+1 looked again"
    # Numbers stay numbers, ordinary text stays as it is.
    assert first["lane"] == "3" and float(first["confidence"]) >= 0 and first["grade"] == "B"
    assert first["reason"] == "wrong_item" and first["station_id"] == "st-1"
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for v in r.values() if v)
    assert csv_safe(-1.5) == -1.5 and csv_safe("plain") == "plain" and csv_safe(None) is None


def test_jsonl_export_keeps_values_exactly(tmp_path):
    store = _store_with_records(tmp_path / "st" / "station.db")
    buf = io.StringIO()
    export_rows(store.rows(), "jsonl", buf)
    store.close()
    assert '"order_id": "=cmd|\' /C calc\'!A0"' in buf.getvalue()  # JSON is data, not a spreadsheet


@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "disk full"), (errno.EDQUOT, "disk full"),
                                          (errno.EROFS, "read-only file system")])
def test_export_file_on_a_full_disk_leaves_nothing_half_written(code, needle, tmp_path, monkeypatch):
    store = _store_with_records(tmp_path / "st" / "station.db", hostile=False)
    out = tmp_path / "out" / "records.csv"
    out.parent.mkdir()
    assert write_export_file(store.rows(), "csv", out) == 2
    before = out.read_bytes()

    def full(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match=needle) as exc:
        write_export_file(store.rows(), "jsonl", out)
    store.close()
    assert "\n" not in str(exc.value) and "nothing was half-written" in str(exc.value)
    assert out.read_bytes() == before  # the earlier export is intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["records.csv"]  # no temporary left


def test_export_to_a_full_stdout_is_one_clear_line(tmp_path):
    """/dev/full answers every write with ENOSPC: a real full device, no monkeypatch."""
    store = _store_with_records(tmp_path / "data" / "station.db", hostile=False)
    store.close()
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "station.cli", "export", "--format", "csv",
                               "--data-dir", str(tmp_path / "data")], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "No space left on device" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_export_command_on_a_full_disk_is_exit_2_and_leaves_no_file(tmp_path, monkeypatch):
    store = _store_with_records(tmp_path / "data" / "station.db", hostile=False)
    store.close()
    out = tmp_path / "records.csv"
    import station.records as records_mod

    real = records_mod.export_rows

    def fills_the_disk(rows, fmt, fh):
        real(rows, fmt, fh)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write or flush on a full disk does

    monkeypatch.setattr(records_mod, "export_rows", fills_the_disk)
    res = _cli("export", "--format", "csv", "--out", str(out), "--data-dir", str(tmp_path / "data"))
    assert res.exit_code == 2 and "No space left on device" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # neither the file nor a temporary


def test_inspect_on_a_full_disk_is_exit_2_and_writes_no_record(data_dir, tmp_path, monkeypatch):
    def images(seed: int) -> list[str]:
        cam = SyntheticCamera(seed=seed)
        cam.stage(StagedItem("GAD-EARBUD-X2", {}, seed=seed))
        paths = []
        for view in ("front", "side"):
            p = tmp_path / f"{seed}" / f"{view}.png"
            p.parent.mkdir(exist_ok=True)
            cv2.imwrite(str(p), cam.capture(view).image)
            paths.append(str(p))
        return paths

    args = ["--sku", "GAD-EARBUD-X2", "--reason", "wrong_item", "--json", "--data-dir", str(data_dir)]
    first = _cli("inspect", *images(3), *args, "--order-id", "ORD-FIRST")
    assert first.exit_code == 0  # the station key and database exist now

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    res = _cli("inspect", *images(4), *args, "--order-id", "ORD-FULL")  # new frames: files to write
    monkeypatch.undo()
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert "disk full" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    with StationStore(data_dir / "station.db").open() as store:
        assert [r["order_id"] for r in store.rows()] == ["ORD-FIRST"] and store.verify().ok
    assert not list((data_dir / "images").rglob("*.tmp*"))


class _FullDisk:
    """A SQLite connection on a full disk: reads work, writes starting with ``prefixes`` fail as SQLite
    reports SQLITE_FULL ("database or disk is full")."""

    def __init__(self, db: sqlite3.Connection, prefixes: tuple[str, ...] = ("INSERT", "UPDATE", "DELETE")) -> None:
        self._db = db
        self._prefixes = prefixes

    def _check(self, sql: str) -> None:
        if " ".join(sql.split()).upper().startswith(self._prefixes):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql, *args):
        self._check(sql)
        return self._db.execute(sql, *args)

    def executemany(self, sql, *args):
        self._check(sql)
        return self._db.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_sync_state_on_a_full_disk_is_exit_2_not_a_traceback(tmp_path, monkeypatch):
    engine = make_engine(f"sqlite:///{tmp_path / 'platform.db'}")
    init_db(engine)
    token = create_token(engine, "station", "st-1")
    srv = ServerThread(create_app(engine=engine)).start()
    try:
        store = _store_with_records(tmp_path / "data" / "station.db", hostile=False)
        real_db = store._db
        # Every write fails (sync state first), then only marking the batch sent (after the platform has it).
        for prefixes in (("INSERT", "UPDATE", "DELETE"), ("UPDATE OUTBOX",)):
            store._db = _FullDisk(real_db, prefixes)
            client = SyncClient(store, SyncSettings(url=srv.url, token=token, pull=False))
            with pytest.raises(SyncError, match="disk full") as exc:
                client.sync_once()
            assert exc.value.local and not exc.value.transient and "\n" not in str(exc.value)
            client.close()
            store._db = real_db
            assert store.pending_count() == 2  # kept for the next attempt: the platform counts a resend once
        store.close()

        import station.records as records_mod

        opened = records_mod.StationStore.open

        def open_on_full_disk(self):
            opened(self)
            self._db = _FullDisk(self._db)
            return self

        monkeypatch.setattr(records_mod.StationStore, "open", open_on_full_disk)
        monkeypatch.setenv("STATION_SYNC_TOKEN", token)
        res = _cli("sync", "--once", "--url", srv.url, "--data-dir", str(tmp_path / "data"))
        assert res.exit_code == 2 and "disk full" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        srv.stop()
        engine.dispose()
