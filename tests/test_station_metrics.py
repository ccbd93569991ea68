"""The station's Prometheus endpoint (`station metrics`): figures read from a real station store, webhook
outbox and label spool, served over real HTTP on 127.0.0.1 by the real command, and checked with the
exposition parser of tests/test_server_metrics.py. A scrape writes nothing; unreadable input is exit 2 / 503."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from station.domain import Decision, Disposition, Grade, ReturnReason, ReturnRequest
from station.licence_plate import LabelSpool
from station.metrics import StationMetrics, station_metrics_server
from station.records import StationStore, record_from_parts
from station.webhooks import WebhookOutbox
from tests.test_server_metrics import parse_exposition, value_of


def _append(store: StationStore, i: int, grade: Grade, disposition: Disposition, review: bool,
            timings: dict) -> str:
    img = np.full((40, 56, 3), (i * 37) % 256, np.uint8)
    img[3:9, i % 30:i % 30 + 6] = (255, 0, 0)
    sha = store.put_image(img).sha256
    dec = Decision(grade, disposition, (), review, ("G",))
    rec = record_from_parts(ReturnRequest(f"O-{i}", "SKU-1", ReturnReason.QUALITY_ISSUE), [], dec, 1,
                            [("front", sha)], "m", "st-1", timings)
    store.append(rec)
    return rec.record_id


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "data"
    with StationStore(d / "station.db") as store:
        first = _append(store, 0, Grade.A, Disposition.RESTOCK, False, {"quality": 4.0, "detect": 120.0})
        _append(store, 1, Grade.A, Disposition.RESTOCK, False, {"quality": 6.0, "detect": 300.0})
        review = _append(store, 2, Grade.C, Disposition.REFURBISH, True, {"quality": 5.0, "detect": 2000.0})
        store.override(review, "sue", "looked again", grade=Grade.B, disposition=Disposition.OPEN_BOX)
        store.mark_sent([first])
        store.mark_dead([(review, 422, "refused")])
    with WebhookOutbox(d / "webhooks.db") as outbox:
        for i, key in enumerate(("k1", "k2")):
            outbox.enqueue({"idempotency_key": key, "record_id": f"r{i}", "event": "disposition"})
    with LabelSpool(d / "labels.db") as spool:
        spool.add("r0", "^XA^XZ")
        spool.add("r1", "^XA^XZ")
        spool.mark("r0", "file:///spool", None)
    return d


def _snapshot(d):
    """Size and mtime of each database; SQLite's WAL side files (-wal, -shm) are not data a scrape writes."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir()
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_metrics_read_items_decisions_stage_latencies_and_backlogs(data_dir):
    before = _snapshot(data_dir)
    m = parse_exposition(StationMetrics(data_dir).exposition())
    assert value_of(m, "station_items_inspected_total") == 3  # the override is not another item
    assert value_of(m, "station_decisions_total", grade="A", disposition="restock", review="false") == 2
    assert value_of(m, "station_decisions_total", grade="C", disposition="refurbish", review="true") == 1
    assert value_of(m, "station_overrides_total", grade="B", disposition="open_box") == 1
    # stage timings (ms in the record) as seconds: detect took 0.12, 0.3 and 2 s
    assert value_of(m, "station_stage_duration_seconds_count", stage="detect") == 3
    assert value_of(m, "station_stage_duration_seconds_bucket", stage="detect", le="0.25") == 1
    assert value_of(m, "station_stage_duration_seconds_bucket", stage="detect", le="2.5") == 3
    assert value_of(m, "station_stage_duration_seconds_sum", stage="detect") == pytest.approx(2.42)
    assert value_of(m, "station_stage_duration_seconds_bucket", stage="quality", le="0.005") == 2  # le is <=: 4, 5 ms
    # the outbox: the first record sent; the reviewed one and the override wait; the reviewed one refused
    assert value_of(m, "station_sync_backlog", state="pending") == 2
    assert value_of(m, "station_sync_backlog", state="dead_letter") == 1
    assert value_of(m, "station_webhook_events", state="pending") == 2
    assert value_of(m, "station_labels", state="printed") == 1
    assert value_of(m, "station_labels", state="unprinted") == 1
    assert _snapshot(data_dir) == before  # read-only: not a byte written, no database created
    for side in data_dir.glob("*.db-*"):  # side files SQLite made for the reader: as private as the database
        assert side.stat().st_mode & 0o077 == 0, side


def test_a_scrape_adds_only_what_was_inspected_since_the_last_one(data_dir):
    collector = StationMetrics(data_dir)
    parse_exposition(collector.exposition())
    with StationStore(data_dir / "station.db") as store:
        _append(store, 3, Grade.D, Disposition.SCRAP, False, {"detect": 50.0})
    m = parse_exposition(collector.exposition())
    assert value_of(m, "station_items_inspected_total") == 4  # not 3 + 4: earlier rows are not counted again
    assert value_of(m, "station_decisions_total", grade="D", disposition="scrap", review="false") == 1
    assert value_of(m, "station_stage_duration_seconds_count", stage="detect") == 4


def test_an_empty_data_dir_reads_zeros_and_creates_nothing(tmp_path):
    m = parse_exposition(StationMetrics(tmp_path / "nothing-yet").exposition())
    assert value_of(m, "station_items_inspected_total") == 0
    assert value_of(m, "station_sync_backlog", state="pending") == 0
    assert not (tmp_path / "nothing-yet").exists()


def test_the_server_answers_on_127_0_0_1_and_503_when_the_database_is_unreadable(data_dir):
    server = station_metrics_server(StationMetrics(data_dir), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        r = httpx.get(f"{url}/metrics", timeout=30)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert value_of(parse_exposition(r.text), "station_items_inspected_total") == 3
        assert httpx.get(f"{url}/other", timeout=30).status_code == 404
        (data_dir / "station.db").write_bytes(b"not a database" * 100)
        for suffix in ("-wal", "-shm"):
            (data_dir / f"station.db{suffix}").unlink(missing_ok=True)
        r = httpx.get(f"{url}/metrics", timeout=30)
        assert r.status_code == 503 and "station database" in r.text
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, **kw):
    return [sys.executable, "-m", "station.cli", "metrics", *args]


def test_station_metrics_command_serves_until_sigterm(data_dir):
    port = _free_port()
    proc = subprocess.Popen(_cli("--port", str(port), "--data-dir", str(data_dir)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # the CLI imports take a while on a busy machine
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "station metrics did not start listening"
                time.sleep(0.2)
        assert r.status_code == 200
        assert value_of(parse_exposition(r.text), "station_decisions_total", grade="A", disposition="restock",
                        review="false") == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert f"http://127.0.0.1:{port}/metrics" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_station_metrics_command_bad_input_is_exit_2_with_one_line(data_dir, tmp_path):
    once = subprocess.run(_cli("--once", "--data-dir", str(data_dir)), capture_output=True, text=True, timeout=300)
    assert once.returncode == 0
    assert value_of(parse_exposition(once.stdout), "station_items_inspected_total") == 3
    with socket.socket() as taken:  # a port in use
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = subprocess.run(_cli("--port", str(taken.getsockname()[1]), "--data-dir", str(data_dir)),
                              capture_output=True, text=True, timeout=300)
    assert busy.returncode == 2 and "pick another --port" in busy.stderr and "Traceback" not in busy.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "station.db").write_bytes(b"not a database" * 100)
    bad = subprocess.run(_cli("--once", "--data-dir", str(broken)), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "station verify" in bad.stderr and "Traceback" not in bad.stderr
    assert json.dumps(bad.stdout) == '""'  # nothing half-printed
    assert os.path.getsize(broken / "station.db") == 1400  # untouched
