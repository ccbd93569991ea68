"""The status bar: hardware state from the backends and sync state from the real store (station/sync.py),
read on the worker and refreshed on a timer; the dashboard shows the same sync line."""

from __future__ import annotations

from station.config import StationConfig, StationSection, SyncConfig
from station.records import StationStore
from station.sync import SyncStatus
from station.users import Role, User
from tests.ui_support import WAIT_MS, make_window, seed_flagged
from ui.status import StationStatus, alarm, hardware_text


def test_status_bar_shows_sync_state_from_the_store(qtbot, data_dir):
    first = seed_flagged(data_dir, "ORD-S-1")
    seed_flagged(data_dir, "ORD-S-2")
    cfg = StationConfig(station=StationSection(data_dir=data_dir), sync=SyncConfig(url="http://platform:8700"))
    win = make_window(qtbot, data_dir, config=cfg)
    qtbot.waitUntil(lambda: "2 records pending" in win.sync.text(), timeout=WAIT_MS)
    assert "not synced yet" in win.sync.text() and "last success never" in win.sync.text()
    assert win.hw.text() == ("Camera: simulated · Conveyor: simulated · E-stop: not reported · "
                             "Scanner: keyboard wedge")

    # What the sync client writes when the platform acknowledged a record (another connection, as in the station).
    with StationStore(data_dir / "station.db").open() as store:
        store.mark_sent([first.record_id])
        store.set_state({"last_success": "2026-03-01T08:30:00+00:00", "consecutive_failures": "0"})
    win.refresh_status()  # the timer does this every STATUS_MS; called here so the test need not wait
    qtbot.waitUntil(lambda: "1 record pending" in win.sync.text(), timeout=WAIT_MS)
    assert "Sync: online" in win.sync.text() and "last success 03-01" in win.sync.text()

    with StationStore(data_dir / "station.db").open() as store:
        store.set_state({"consecutive_failures": "3", "last_error": "connection refused"})
    assert win.status_timer.isActive()
    qtbot.waitUntil(lambda: "offline (3 failed attempts)" in win.sync.text(), timeout=WAIT_MS)  # by the timer

    win.ctx.set_user(User("sue", Role.SUPERVISOR))
    win.tabs.setCurrentWidget(win.dashboard)
    win.dashboard.refresh()
    qtbot.waitUntil(lambda: "1 record pending" in win.dashboard.sync.text(), timeout=WAIT_MS)
    assert win.dashboard.sync.text() == win.sync.text()


def test_hardware_text_reports_estop_and_jam():
    sync = SyncStatus(0, 0, None, None, None, 0)
    line = StationStatus("connected", "connected", True, True, False, sync)
    assert hardware_text(line) == ("Camera: connected · Conveyor: connected · E-STOP · JAM · E-stop: PRESSED · "
                                   "Scanner: keyboard wedge")
    assert alarm(line)
    ok = StationStatus("connected", "connected", False, False, False, sync)
    assert "E-stop: clear" in hardware_text(ok) and not alarm(ok)
    assert alarm(StationStatus("connected", "down", None, None, False, sync))
