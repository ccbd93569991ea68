"""Sync client against a real platform on 127.0.0.1: push, resume after refused connections and 5xx,
idempotent re-sends, pulls, status via the CLI, blurring, and a small SIGKILL crash test."""

from __future__ import annotations

import http.server
import json
import random
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from station.domain import Decision, Disposition, Grade, ReturnReason, ReturnRequest
from station.records import StationStore, record_from_parts
from station.server.api import create_app, create_token, init_db, make_engine
from station.server.models import Image, Record, TreeHead
from station.server.runner import ServerThread, free_port
from station.sync import SyncClient, SyncError, SyncSettings, backoff_delay, read_status, redact


@pytest.fixture()
def platform(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'platform.db'}")
    init_db(engine)
    token = create_token(engine, "station", "st-1")
    admin = create_token(engine, "admin", "root")
    srv = ServerThread(create_app(engine=engine))
    yield srv, engine, token, admin
    srv.stop()
    engine.dispose()


def _fill(store: StationStore, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        img = np.full((48, 64, 3), (i * 29) % 256, np.uint8)
        img[4:12, i % 40:i % 40 + 8] = (0, 255, 0)
        sha = store.put_image(img).sha256
        dec = Decision(Grade.A, Disposition.RESTOCK, (), False, ("G-A",))
        rec = record_from_parts(ReturnRequest(f"O-{i}", "SKU", ReturnReason.NO_REASON_7DAY, brand="b"), [], dec, 1,
                                [("front", sha)], "m", "st-1", {})
        store.append(rec)
        ids.append(rec.record_id)
    return ids


def _server_count(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(Record))


def test_push_everything_with_thumbnails_images_and_the_signed_head(platform, tmp_path):
    srv, engine, token, _ = platform
    srv.start()
    store = StationStore(tmp_path / "st" / "station.db").open()
    _fill(store, 12)
    store.override(store.outbox_batch(1)[0]["record_id"], "sup", "checked again", grade=Grade.B)
    client = SyncClient(store, SyncSettings(url=srv.url, token=token, batch_size=5))
    res = client.sync_once()
    assert res["pushed"] == 13 and res["created"] == 13 and res["images"] == 12
    assert store.pending_count() == 0 and _server_count(engine) == 13
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Image).where(Image.thumbnail.is_not(None))) == 12
        assert s.scalar(select(func.count()).select_from(Image).where(Image.data.is_not(None))) == 12
        assert s.scalar(select(func.max(TreeHead.tree_size)).where(TreeHead.station_id == "st-1")) == 13
    st = read_status(store)
    assert st.pending == 0 and st.pushed_total == 13 and st.last_success and st.last_error is None
    # A reply lost after the server stored the batch: the station sends it again, the server counts it once.
    store.db.execute("UPDATE outbox SET sent_at = NULL")
    again = client.sync_once()
    assert again["created"] == 0 and again["existing"] == 13 and _server_count(engine) == 13
    client.close()


def test_resumes_after_connection_refused_and_server_errors(platform, tmp_path):
    srv, engine, token, _ = platform
    store = StationStore(tmp_path / "st" / "station.db").open()
    _fill(store, 4)
    refused = SyncClient(store, SyncSettings(url=f"http://127.0.0.1:{free_port()}", token=token, timeout_s=2))
    with pytest.raises(SyncError, match="unreachable") as exc:
        refused.sync_once()
    assert exc.value.transient
    st = read_status(store)
    assert st.pending == 4 and st.consecutive_failures == 1 and "unreachable" in st.last_error

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "boom"}')

        def log_message(self, *a):
            pass

    broken = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    try:
        failing = SyncClient(store, SyncSettings(url=f"http://127.0.0.1:{broken.server_port}", token=token))
        with pytest.raises(SyncError, match="500") as exc:
            failing.sync_once()
        assert exc.value.transient and store.pending_count() == 4
    finally:
        broken.shutdown()
    srv.start()
    client = SyncClient(store, SyncSettings(url=srv.url, token=token))
    assert client.sync_once()["pushed"] == 4
    assert store.pending_count() == 0 and _server_count(engine) == 4
    assert read_status(store).consecutive_failures == 0


def test_a_wrong_token_is_a_permanent_error_and_pulls_land_in_the_store(platform, tmp_path):
    srv, engine, token, admin = platform
    srv.start()
    store = StationStore(tmp_path / "st" / "station.db").open()
    _fill(store, 1)
    with pytest.raises(SyncError, match="401") as exc:
        SyncClient(store, SyncSettings(url=srv.url, token="not-the-token")).sync_once()
    assert not exc.value.transient
    import httpx

    httpx.put(f"{srv.url}/api/v1/rmas", headers={"Authorization": f"Bearer {admin}"},
              json={"rmas": [{"order_id": "RMA-1", "sku": "SKU", "reason": "wrong_item"}]}).raise_for_status()
    res = SyncClient(store, SyncSettings(url=srv.url, token=token)).sync_once()
    assert res["pulled"] == {"rmas": 1, "catalogue_updates": 0}
    assert json.loads(store.db.execute("SELECT payload FROM rmas").fetchone()[0])["reason"] == "wrong_item"


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 60.0, rng) for n in range(1, 10)]
    for n, d in enumerate(delays, start=1):
        step = min(60.0, 2 ** (n - 1))
        assert step / 2 <= d <= step
    assert len({round(backoff_delay(3, 1.0, 60.0, rng), 6) for _ in range(20)}) > 1  # jittered


def test_blurring_changes_text_regions_and_is_off_by_default():
    img = np.full((240, 320, 3), 235, np.uint8)
    for row in range(4):
        cv2.putText(img, "Flat 12, 34 Long Street", (20, 60 + 30 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)
    assert redact(img, False, False) is img
    out = redact(img, faces=False, labels=True)
    assert np.abs(out.astype(int) - img.astype(int))[40:160, 20:300].mean() > 5


def test_cli_sync_once_and_status(platform, tmp_path):
    srv, engine, token, _ = platform
    srv.start()
    data = tmp_path / "st"
    store = StationStore(data / "station.db").open()
    _fill(store, 3)
    store.close()
    base = [sys.executable, "-m", "station.cli", "sync", "--json", "--data-dir", str(data)]
    proc = subprocess.run(base + ["--status"], capture_output=True, text=True)
    assert proc.returncode == 0 and json.loads(proc.stdout)["pending"] == 3
    proc = subprocess.run(base, capture_output=True, text=True)
    assert proc.returncode == 2 and "no platform URL" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(base + ["--once", "--url", srv.url, "--token", token], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] and out["pushed"] == 3 and out["pending"] == 0 and out["last_success"]
    proc = subprocess.run(base + ["--once", "--url", f"http://127.0.0.1:{free_port()}", "--token", token],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False and "Traceback" not in proc.stderr


def test_sigkill_while_inspecting_and_syncing_loses_and_duplicates_nothing():
    from station.bench.crash import run_crash_bench

    res = run_crash_bench(trials=4, per_trial=4, seed=3)
    assert res["kills"] >= 1
    assert res["on_station"] == res["on_server"] == res["inspections"] == 16
    assert res["lost"] == 0 and res["duplicated"] == 0 and res["pending"] == 0
    assert res["verify_ok"], res["problems"]


def test_face_blur_without_cascades_is_a_clear_error_not_a_crash():
    """Face blurring either works or refuses clearly: an image with a face must never leave unblurred."""
    import numpy as np

    from station.config import SyncConfig
    from station.sync import SyncError, face_blur_available, redact, settings_from_config

    cfg = SyncConfig(url="http://127.0.0.1:9", token="t" * 16, blur_faces=True)
    img = np.full((64, 64, 3), 128, np.uint8)
    if face_blur_available():
        assert settings_from_config(cfg).blur_faces
        assert redact(img, faces=True, labels=False).shape == img.shape
    else:
        with pytest.raises(SyncError, match="blur_faces"):
            settings_from_config(cfg)
        with pytest.raises(SyncError, match="blur_faces"):
            redact(img, faces=True, labels=False)
