"""Helpers for tests/test_ui_*.py: build the real window on a temp data dir and drive it by keyboard."""

from __future__ import annotations

import sqlite3

import numpy as np
from PyQt6.QtCore import Qt

from station.config import StationConfig, StationSection
from station.domain import Frame, ReturnReason, ReturnRequest

WAIT_MS = 60000


def make_window(qtbot, data_dir, language="en", config=None, config_path=None):
    """The real window on ``data_dir`` (or on ``config``, started from ``config_path``), booted and shown."""
    from ui.app import build_window, make_app

    make_app()
    config = config or StationConfig(station=StationSection(data_dir=data_dir))
    win = build_window(config, language, config_path)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitUntil(lambda: win.ctx.station is not None and win.login.pin.isEnabled(), timeout=WAIT_MS)
    return win


def login(qtbot, win, user, pin):
    combo = win.login.user
    combo.lineEdit().clear()
    qtbot.keyClicks(combo.lineEdit(), user)
    qtbot.keyClicks(win.login.pin, pin)
    qtbot.keyClick(win.login.pin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.ctx.user is not None and win.ctx.user.username == user, timeout=WAIT_MS)


def scan_and_capture(qtbot, bench, rma_text):
    """Type the RMA like a keyboard-wedge scanner, Enter, then Space for each view until decided."""
    qtbot.keyClicks(bench.scan, rma_text)
    qtbot.keyClick(bench.scan, Qt.Key.Key_Return)
    presses = 0
    while bench.state != "decided":
        qtbot.waitUntil(lambda: bench.state in ("capturing", "decided"), timeout=WAIT_MS)
        if bench.state == "capturing":
            qtbot.keyClick(bench, Qt.Key.Key_Space)
            presses += 1
            assert presses < 12, "capture never finished"
    return presses


def rows(data_dir, order_id):
    db = sqlite3.connect(data_dir / "station.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM inspections WHERE order_id=? ORDER BY seq", (order_id,))]
    finally:
        db.close()


def image_count(data_dir, record_id):
    db = sqlite3.connect(data_dir / "station.db")
    try:
        return db.execute("SELECT COUNT(*) FROM inspection_images WHERE record_id=?", (record_id,)).fetchone()[0]
    finally:
        db.close()


def seed_flagged(data_dir, order_id, streamer="live-lily"):
    """Inspect one item outside the UI with an under-exposed view, so the pipeline flags it for review."""
    from station.app import boot
    from vision.camera import StagedItem

    st = boot(StationConfig(station=StationSection(data_dir=data_dir)))
    try:
        req = ReturnRequest(order_id, "GAD-SPEAKER-M", ReturnReason.QUALITY_ISSUE, f"U-{order_id}", "live",
                            streamer, "soundbee", "zto")
        st.camera.stage(StagedItem("GAD-SPEAKER-M", {"front": ("scratch",)}, 5))
        frames = [st.camera.capture(v) for v in st.config.station.views]
        frames[0] = Frame(np.zeros_like(frames[0].image), frames[0].view)
        return st.pipeline.inspect(req, frames, operator="someone").record
    finally:
        st.close()
