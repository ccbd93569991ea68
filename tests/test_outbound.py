"""After a decision is durable: its licence-plate label (PDF by default, read back by `history --scan`), its
marketplace codes in `inspect --json`, and a signed webhook to a receiver that fails before it answers."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from station.webhooks import verify_signature
from tests.test_cli import item_images, station  # noqa: F401 - the fixture is used by name

SECRET = b"0123456789abcdef-outbound-test"


def test_every_inspection_gets_a_label_that_opens_its_record(data_dir, item_images):  # noqa: F811
    proc = station("inspect", "--json", "--sku", "GAD-EARBUD-X2", "--reason", "damaged_in_transit",
                   "--unit-code", "U-LP-1", *map(str, item_images), data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    codes = out["marketplace"]
    assert set(codes) >= {"ebay_condition_id", "amazon_condition", "backmarket_grade"}
    pdf = data_dir / "labels" / f"{out['record_id']}.pdf"
    assert pdf.is_file(), sorted(p.name for p in data_dir.iterdir())
    scanned = station("history", "--scan", str(pdf), "--json", data_dir=data_dir)
    assert scanned.returncode == 0, scanned.stderr
    rows = json.loads(scanned.stdout)
    assert [r["record_id"] for r in rows] == [out["record_id"]] and rows[0]["unit_code"] == "U-LP-1"
    status = station("sync", "--status", "--json", data_dir=data_dir)
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)
    assert st["labels"]["printed"] == 1 and st["labels"]["unprinted"] == 0
    assert st["webhooks"]["pending"] == 0  # no receiver configured: nothing queued


def test_history_needs_one_of_unit_code_or_scan(data_dir, tmp_path):
    proc = station("history", data_dir=data_dir)
    assert proc.returncode == 2 and "--unit-code" in proc.stderr and "Traceback" not in proc.stderr
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 400), 255, np.uint8))
    proc = station("history", "--scan", str(blank), data_dir=data_dir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


class _FlakyReceiver(http.server.BaseHTTPRequestHandler):
    failures_left = 3
    received: list[tuple[bytes, str]] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(500)
        else:
            type(self).received.append((body, self.headers["X-Station-Signature"]))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def receiver():
    _FlakyReceiver.failures_left, _FlakyReceiver.received = 1, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()


def test_a_booted_station_sends_its_decision_signed_once(data_dir: Path, receiver, monkeypatch):
    from station.app import boot
    from station.config import StationConfig
    from station.domain import ReturnReason, ReturnRequest
    from vision.camera import StagedItem

    monkeypatch.setenv("STATION_WEBHOOK_SECRET", SECRET.decode())
    cfg = StationConfig.model_validate({
        "station": {"data_dir": str(data_dir)},
        "webhooks": {"url": receiver, "backoff_base_s": 0.05, "backoff_max_s": 0.2},
    })
    station_ = boot(cfg)
    try:
        station_.pipeline.outbound.idle_s = 0.05
        station_.camera.stage(StagedItem("GAD-EARBUD-X2", {}, seed=5))
        frames = [station_.camera.capture(v) for v in ("front", "side")]
        result = station_.pipeline.inspect(ReturnRequest("O-WH-1", "GAD-EARBUD-X2", ReturnReason.NO_REASON_7DAY,
                                                         unit_code="U-WH-1"), frames)
        deadline = time.monotonic() + 20
        while not _FlakyReceiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        station_.close()
    assert len(_FlakyReceiver.received) == 1  # one 500, then delivered once
    body, header = _FlakyReceiver.received[0]
    assert verify_signature(SECRET, body, header)
    event = json.loads(body)
    assert event["record_id"] == result.record.record_id and event["grade"] == result.record.decision.grade.value
    assert "marketplace" in event
