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
                             "Scanner: keyboard wedge · Labels: ok")  # the default station prints labels

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


def test_the_status_line_says_the_scale_and_label_printer_state(tmp_path):
    from hardware.scale import MtSicsScale
    from hardware.scale_sim import ScaleSimulator
    from station.licence_plate import LabelSpool, TcpPrinter
    from station.marketplace import MarketplaceConfig
    from station.outbound import Outbound
    from ui.status import _labels_state, _scale_state

    sim = ScaleSimulator(tmp_path / "scale", weight_g=242.0, stable_wait_s=0.05).start()
    scale = MtSicsScale(str(sim.port_path), command_timeout_s=0.3, stable_timeout_s=0.5)
    try:
        assert _scale_state(None) == ("absent", None) and _scale_state(scale) == ("not_open", None)
        scale.measure()
        state, grams = _scale_state(scale)
        assert state == "stable" and abs(grams - 242.0) < 0.01
        sim.set_unstable(True)
        scale.measure()
        assert _scale_state(scale)[0] == "unstable"
        sim.set_unstable(False)
        sim.unplug()
        scale.measure()
        assert _scale_state(scale) == ("disconnected", None)
    finally:
        scale.close()
        sim.close()

    # A refused printer: the label waits in the real spool, with why.
    printer = TcpPrinter("tcp://127.0.0.1:1", "127.0.0.1", 1, 0.2, False)
    outbound = Outbound(tmp_path, printer, None, MarketplaceConfig())
    assert _labels_state(None) == ("off", 0, "") and _labels_state(outbound) == ("ok", 0, "")
    with LabelSpool(tmp_path / "labels.db") as spool:
        spool.add("rec-1", "^XA^XZ")
        spool.mark("rec-1", printer.url, "connection refused")
    assert _labels_state(outbound) == ("waiting", 1, "connection refused")

    sync = SyncStatus(0, 0, None, None, None, 0)
    line = StationStatus("connected", "connected", False, False, False, sync, "stable", 242.0, "waiting", 1,
                         "connection refused")
    assert hardware_text(line).endswith("Scanner: keyboard wedge · Scale: stable 242.0 g · Labels: 1 waiting · "
                                        "last failure: connection refused")
    gone = StationStatus("connected", "connected", False, False, False, sync, "disconnected", None, "ok")
    assert hardware_text(gone).endswith("Scale: DISCONNECTED · Labels: ok")
