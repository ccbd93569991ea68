"""The inspector bench driven by keyboard alone (offscreen Qt, real pipeline, real SQLite)."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from station.domain import Frame, ReturnReason, ReturnRequest
from tests.ui_support import WAIT_MS, image_count, login, make_window, rows, scan_and_capture
from ui.scan import RmaError, format_rma, parse_rma


def _rma(order: str) -> str:
    return format_rma(ReturnRequest(order, "BTL-FEED-240", ReturnReason.NO_REASON_7DAY, f"U-{order}", "live",
                                    "host-wang", None, "sf-express"))


def test_rma_codes_round_trip_and_bad_scans_say_why():
    req = ReturnRequest("O1", "APP-TEE-M", ReturnReason.WRONG_SIZE, "U9", None, "s1", "urbanwear", None)
    assert parse_rma(format_rma(req)) == req
    assert parse_rma('{"order_id": "O1", "sku": "APP-TEE-M", "reason": "wrong_size"}').sku == "APP-TEE-M"
    for bad, key in (("hello", "not an RMA code"), ("RMA1||X|quality_issue", "missing order id"),
                     ("RMA1|O|X|broken", "unknown return reason"),
                     ("RMA1|" + "O" * 200 + "|X|quality_issue", "beyond the platform's limit")):
        with pytest.raises(RmaError) as exc:
            parse_rma(bad)
        assert exc.value.key == key


def test_scan_capture_accept_by_keyboard_records_the_inspection(qtbot, data_dir):
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "inspector", "1111")
    bench = win.bench
    presses = scan_and_capture(qtbot, bench, _rma("ORD-UI-1"))
    assert presses == 3  # one Space per configured view (front, side, top)
    res = bench.result
    assert bench.grade.text() == res.record.decision.grade.value
    assert all(tile.has_image for tile in bench.tiles.values()) and bench.reference.has_image
    (row,) = rows(data_dir, "ORD-UI-1")
    assert (row["operator"], row["sku"], row["streamer"], row["brand"]) == ("inspector", "BTL-FEED-240",
                                                                            "host-wang", "mamacare")
    assert image_count(data_dir, row["record_id"]) == 3
    assert row["review"] == 0, "clean unopened bottle should not need review (check the model/rules)"
    qtbot.keyClick(bench, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bench.state == "idle", timeout=WAIT_MS)
    assert "Accepted" in bench.prompt.text() and f"tote {row['lane']}" in bench.prompt.text()
    assert len(rows(data_dir, "ORD-UI-1")) == 1  # accepting the proposal writes no second row
    assert bench.scan.text() == ""


def test_override_by_keyboard_writes_who_why_and_the_new_decision(qtbot, data_dir):
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "inspector", "1111")
    bench = win.bench
    scan_and_capture(qtbot, bench, _rma("ORD-UI-2"))
    qtbot.keyClick(bench, Qt.Key.Key_F8)
    qtbot.waitUntil(lambda: bench.override_dialog is not None and bench.override_dialog.isVisible(), timeout=WAIT_MS)
    dlg = bench.override_dialog
    qtbot.keyClick(dlg.reason, Qt.Key.Key_Down)  # missed_defect -> false_defect -> ...
    qtbot.keyClick(dlg.reason, Qt.Key.Key_Down)
    assert dlg.reason.currentData() == "wrong_grade"
    qtbot.keyClicks(dlg.grade, "C")
    qtbot.keyClicks(dlg.disposition, "Ref")
    assert (dlg.grade.currentData(), dlg.disposition.currentData()) == ("C", "refurbish")
    qtbot.keyClicks(dlg.comment, "teat cracked at base")
    qtbot.keyClick(dlg.comment, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bench.state == "idle", timeout=WAIT_MS)
    original, override = rows(data_dir, "ORD-UI-2")
    assert override["overrides"] == original["record_id"]
    assert (override["operator"], override["grade"], override["disposition"]) == ("inspector", "C", "refurbish")
    assert override["lane"] == win.ctx.config.lane_for("refurbish")
    assert override["override_reason"] == "[inspector] wrong_grade: teat cracked at base"
    assert "Override saved" in bench.prompt.text()


def test_quality_gate_asks_for_a_retake(qtbot, data_dir):
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "inspector", "1111")
    bench = win.bench
    real = win.ctx.station.camera
    shots = []

    class DarkFirstFront:  # the first front shot is black (lens cap on); the retake is real
        def stage(self, item):
            real.stage(item)

        def capture(self, view):
            shots.append(view)
            frame = real.capture(view)
            if shots == ["front"]:
                return Frame(np.zeros_like(frame.image), view)
            return frame

        def close(self):
            real.close()

    win.ctx.station.camera = DarkFirstFront()
    qtbot.keyClicks(bench.scan, _rma("ORD-UI-3"))
    qtbot.keyClick(bench.scan, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bench.state == "capturing", timeout=WAIT_MS)
    qtbot.keyClick(bench, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: bench.state == "capturing" and bench.attempts.get("front") == 1, timeout=WAIT_MS)
    assert "Retake view 1/3" in bench.prompt.text() and "under-exposed" in bench.prompt.text()
    assert bench.prompt.property("state") == "bad"
    assert bench.current_view() == "front"
    qtbot.keyClick(bench, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: bench.current_view() == "side", timeout=WAIT_MS)
    assert "Capture view 2/3" in bench.prompt.text()
    qtbot.keyClick(bench, Qt.Key.Key_Escape)
    assert bench.state == "idle" and rows(data_dir, "ORD-UI-3") == []  # cancelled before inspection: no record


def test_unknown_sku_and_bad_scan_are_reported_not_crashed(qtbot, data_dir):
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "inspector", "1111")
    bench = win.bench
    qtbot.keyClicks(bench.scan, "garbage")
    qtbot.keyClick(bench.scan, Qt.Key.Key_Return)
    assert "Scan not understood: not an RMA code" in bench.prompt.text() and bench.state == "idle"
    bench.scan.clear()
    qtbot.keyClicks(bench.scan, "RMA1|ORD-X|NO-SUCH-SKU|quality_issue")
    qtbot.keyClick(bench.scan, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "NO-SUCH-SKU" in bench.prompt.text(), timeout=WAIT_MS)
    assert "unknown SKU" in bench.prompt.text() and bench.prompt.property("state") == "bad"
    assert bench.state == "idle" and rows(data_dir, "ORD-X") == []


# ------------------------------------------------------------------------------------------- live view


def _shown(tile):
    """The picture the live tile shows now, as an image (None: nothing shown)."""
    pix = tile.image.pixmap()
    return None if pix is None or pix.isNull() else pix.toImage()


def test_live_view_runs_while_idle_and_pauses_for_inspection_and_when_hidden(qtbot, data_dir):
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "supervisor", "2222")  # a supervisor has other tabs to switch to
    bench, live = win.bench, win.bench.live
    states = []  # the bench's state each time a grab went to the worker
    live.grab_requested.connect(lambda: states.append(bench.state))

    qtbot.waitUntil(lambda: live.shown >= 1, timeout=WAIT_MS)
    first = _shown(bench.live_tile)
    assert first is not None and bench.live_tile.caption.text() == "Live"
    qtbot.waitUntil(lambda: _shown(bench.live_tile) != first, timeout=WAIT_MS)  # a moving picture, not a still

    qtbot.keyClicks(bench.scan, _rma("ORD-UI-LIVE"))
    qtbot.keyClick(bench.scan, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bench.state == "capturing", timeout=WAIT_MS)
    seen = live.shown
    qtbot.waitUntil(lambda: live.shown > seen, timeout=WAIT_MS)  # live while waiting for the operator
    assert bench.live_tile.caption.text().startswith("Live:")  # with the quality gate's verdict
    while bench.state != "decided":
        qtbot.waitUntil(lambda: bench.state in ("capturing", "decided"), timeout=WAIT_MS)
        if bench.state == "capturing":
            qtbot.keyClick(bench, Qt.Key.Key_Space)
    assert all(tile.has_image for tile in bench.tiles.values())
    requested = live.requested
    qtbot.wait(600)  # decided: the tiles show the inspection, the camera rests
    assert live.requested == requested and bench.live_tile.caption.text() == "Live view paused"
    assert not bench.live_tile.isVisible()  # the decision gets the room while it is shown
    assert set(states) <= {"idle", "capturing"}, states  # never while capturing or inspecting used the camera
    assert live.max_in_flight == 1

    qtbot.keyClick(bench, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bench.state == "idle", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: live.requested > requested, timeout=WAIT_MS)  # back to live
    assert bench.live_tile.isVisible()

    win.tabs.setCurrentWidget(win.dashboard)
    assert not live.timer.isActive()
    qtbot.waitUntil(lambda: live.in_flight == 0, timeout=WAIT_MS)
    requested = live.requested
    qtbot.wait(600)
    assert live.requested == requested  # hidden page: no grabs
    win.tabs.setCurrentWidget(win.bench)
    qtbot.waitUntil(lambda: live.requested > requested, timeout=WAIT_MS)

    win.showMinimized()
    qtbot.waitUntil(lambda: win.isMinimized() and live.in_flight == 0, timeout=WAIT_MS)
    requested = live.requested
    qtbot.wait(600)
    assert live.requested == requested  # minimised window: no grabs
    win.showNormal()
    qtbot.waitUntil(lambda: live.requested > requested, timeout=WAIT_MS)


def test_live_view_drops_frames_instead_of_queueing_grabs(qtbot, data_dir):
    import time

    win = make_window(qtbot, data_dir)
    login(qtbot, win, "inspector", "1111")
    bench, live = win.bench, win.bench.live
    real = win.ctx.station.camera
    calls = []

    class SlowPreview:  # a camera whose live frames take 0.35 s: three ticks pass during each grab
        def stage(self, item):
            real.stage(item)

        def capture(self, view):
            return real.capture(view)

        def preview(self, view=None):
            calls.append(view)
            time.sleep(0.35)
            return real.preview(view)

        def close(self):
            real.close()

    qtbot.waitUntil(lambda: live.in_flight == 0, timeout=WAIT_MS)
    win.ctx.station.camera = SlowPreview()
    in_flight = []
    live.grab_requested.connect(lambda: in_flight.append(live.in_flight))
    t0 = time.monotonic()
    qtbot.wait(2500)
    elapsed = time.monotonic() - t0
    assert live.max_in_flight == 1 and set(in_flight) == {1}
    assert 2 <= len(calls) <= elapsed / 0.35 + 1  # one grab at a time: ~7, not one per 110 ms tick (~22)

    class NoPreview:  # e.g. a folder replay: the tile says so instead of failing
        def capture(self, view):
            return real.capture(view)

        def close(self):
            real.close()

    win.ctx.station.camera = NoPreview()
    qtbot.waitUntil(lambda: bench.live_tile.caption.text() == "This camera has no live view", timeout=WAIT_MS)
    assert not bench.live_tile.has_image


# ------------------------------------------------------------------------------------------- issue 22


def _decided(qtbot, data_dir, user, pin, order, sku="BTL-FEED-240", reason=ReturnReason.NO_REASON_7DAY):
    win = make_window(qtbot, data_dir)
    login(qtbot, win, user, pin)
    scan_and_capture(qtbot, win.bench, format_rma(ReturnRequest(order, sku, reason, f"U-{order}", "live",
                                                                "host-wang", None, None)))
    return win, win.bench


def test_f8_down_enter_writes_no_record_and_says_what_is_missing(qtbot, data_dir):
    win, bench = _decided(qtbot, data_dir, "inspector", "1111", "ORD-UI-N1")
    qtbot.keyClick(bench, Qt.Key.Key_F8)
    qtbot.waitUntil(lambda: bench.override_dialog is not None and bench.override_dialog.isVisible(), timeout=WAIT_MS)
    dlg = bench.override_dialog
    assert dlg.error.isVisible() and "changes nothing" in dlg.error.text()  # said before Save
    qtbot.keyClick(dlg.reason, Qt.Key.Key_Down)
    qtbot.keyClick(dlg.reason, Qt.Key.Key_Down)
    assert dlg.reason.currentData() == "wrong_grade"
    qtbot.keyClick(dlg.reason, Qt.Key.Key_Return)
    assert bench.override_dialog is dlg and dlg.isVisible() and bench.state == "decided"
    assert len(rows(data_dir, "ORD-UI-N1")) == 1  # no permanent no-op record


def test_an_inspector_is_told_before_any_form_that_a_flagged_item_needs_a_supervisor(qtbot, data_dir):
    # A child car seat returned for a quality issue with no crack or dent seen: a supervisor checks it.
    win, bench = _decided(qtbot, data_dir, "inspector", "1111", "ORD-UI-N2", "SEAT-CAR-G1",
                          ReturnReason.QUALITY_ISSUE)
    assert bench.result.record.decision.review
    assert "only a supervisor can change it" in bench.prompt.text()
    assert not bench.override_button.isEnabled() and "supervisor" in bench.override_button.toolTip()
    qtbot.keyClick(bench, Qt.Key.Key_F8)
    assert bench.override_dialog is None  # no form to fill in vain
    assert "Only a supervisor can change an item flagged for review" in bench.prompt.text()
    qtbot.keyClick(bench, Qt.Key.Key_Return)  # Enter still sends it on to the queue
    qtbot.waitUntil(lambda: bench.state == "idle", timeout=WAIT_MS)
    assert "Sent to the supervisor queue" in bench.prompt.text()


def test_a_refused_save_keeps_the_dialog_and_the_typed_comment(qtbot, data_dir):
    from station.users import Role, User, record_override

    win, bench = _decided(qtbot, data_dir, "inspector", "1111", "ORD-UI-N3")
    qtbot.keyClick(bench, Qt.Key.Key_F8)
    qtbot.waitUntil(lambda: bench.override_dialog is not None and bench.override_dialog.isVisible(), timeout=WAIT_MS)
    dlg = bench.override_dialog
    new_grade = "D" if bench.result.record.decision.grade.value != "D" else "C"
    qtbot.keyClicks(dlg.grade, new_grade)
    qtbot.keyClicks(dlg.comment, "teat cracked at base")
    # Meanwhile a supervisor decides the same item elsewhere: this override is now stale.
    ctx, rid, done = win.ctx, bench.result.record.record_id, []
    ctx.jobs.submit(lambda: record_override(ctx.station.store, User("boss", Role.SUPERVISOR), rid, "other",
                                            "checked it myself", None, None, None), done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT_MS)
    qtbot.keyClick(dlg.comment, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "Not saved" in dlg.error.text(), timeout=WAIT_MS)
    assert dlg.isVisible() and bench.override_dialog is dlg and "decided again" in dlg.error.text()
    assert (dlg.grade.currentData(), dlg.comment.text()) == (new_grade, "teat cracked at base")
    assert len(rows(data_dir, "ORD-UI-N3")) == 2  # the supervisor's; nothing of ours


def test_the_order_row_stays_put_and_the_why_column_keeps_its_width(qtbot, data_dir):
    readable = 330  # px: a rule line of a few words per line, not a word per line
    win = make_window(qtbot, data_dir)
    win.resize(1280, 800)  # a small bench screen
    login(qtbot, win, "supervisor", "2222")
    bench = win.bench
    places = []
    for order, sku in (("ORD-UI-N4", "BTL-FEED-240"), ("ORD-UI-N5", "HH-KETTLE-1L")):
        scan_and_capture(qtbot, bench, format_rma(ReturnRequest(order, sku, ReturnReason.DAMAGED_IN_TRANSIT,
                                                                f"U-{order}", "live", "host-wang", None, None)))
        qtbot.wait(50)
        places.append({k: (w.x(), w.width()) for k, w in {**bench.info_labels, **{
            f"v-{k}": v for k, v in bench.info_values.items()}}.items()})
        if order == "ORD-UI-N5":
            break
        bench.cancel_item()
    assert places[0] == places[1], "the order/SKU row moved between two items"
    assert "Electric kettle" in bench.info_values["sku"].toolTip()
    # The decision next to the live view (the live view shows again between items): the rules column keeps
    # a readable width, and every rule line can be read (wrapped whole, scrolling when taller).
    bench.live_tile.show()
    qtbot.wait(50)
    rules = bench.rules
    assert rules.text() and rules.width() >= readable
    viewport = rules.parentWidget()
    shown = viewport.height()
    needed = rules.heightForWidth(rules.width())
    assert rules.height() >= needed, "rule lines are cut"
    assert needed <= shown or bench.rules_scroll.verticalScrollBar().maximum() > 0
