"""Supervisor review queue: roles decide who sees it; approving writes an override with who and why."""

from __future__ import annotations

from PyQt6.QtCore import Qt

from tests.ui_support import WAIT_MS, login, make_window, rows, seed_flagged


def test_supervisor_approves_a_flagged_item(qtbot, data_dir):
    flagged = seed_flagged(data_dir, "ORD-Q-1")
    seed_flagged(data_dir, "ORD-Q-2", streamer="studio-nine")
    assert flagged.decision.review
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "supervisor", "2222")
    queue = win.queue
    assert win.tabs.isTabEnabled(1)
    win.tabs.setCurrentWidget(queue)
    qtbot.waitUntil(lambda: len(queue.items) == 2, timeout=WAIT_MS)
    queue.streamer.setCurrentIndex(queue.streamer.findData("live-lily"))  # filter by streamer
    qtbot.waitUntil(lambda: [i.order_id for i in queue.items] == ["ORD-Q-1"], timeout=WAIT_MS)
    assert queue.table.rowCount() == 1 and queue.table.item(0, 1).text() == "ORD-Q-1"
    assert queue.select_order("ORD-Q-1")
    qtbot.waitUntil(lambda: queue.evidence is not None, timeout=WAIT_MS)
    assert sum(t.isVisible() and t.has_image for t in queue.ev_tiles) == 3  # the stored views
    assert "Q-POOR-CAPTURE" in queue.ev_rules.text()
    assert queue.approve_button.isEnabled()
    qtbot.mouseClick(queue.approve_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: [i.order_id for i in queue.items] == [], timeout=WAIT_MS)
    original, approval = rows(data_dir, "ORD-Q-1")
    proposed = flagged.decision.proposed_disposition
    assert approval["overrides"] == original["record_id"]
    assert (approval["operator"], approval["review"], approval["disposition"]) == ("supervisor", 0, proposed.value)
    assert approval["override_reason"] == "[supervisor] supervisor_approval"
    assert len(rows(data_dir, "ORD-Q-2")) == 1  # the other flagged item is untouched


def test_inspector_has_no_queue_and_cannot_approve_at_the_bench(qtbot, data_dir):
    seed_flagged(data_dir, "ORD-Q-3")
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "inspector", "1111")
    assert not win.tabs.isTabEnabled(1)
    win.queue.refresh()  # even if the page is reached, station.users refuses the listing
    qtbot.waitUntil(lambda: not win.queue._loading, timeout=WAIT_MS)
    assert win.queue.items == []
    assert "may not" in win.statusBar().currentMessage()


def test_wrong_pin_is_refused(qtbot, data_dir):
    win = make_window(qtbot, data_dir)
    qtbot.keyClicks(win.login.pin, "0000")
    qtbot.keyClick(win.login.pin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: win.login.error.text() != "", timeout=WAIT_MS)
    assert win.ctx.user is None and "wrong PIN" in win.login.error.text()
    assert win.stack.currentWidget() is win.login


def test_evidence_export_reports_progress_to_the_status_bar(qtbot, data_dir):
    import zipfile

    seed_flagged(data_dir, "ORD-Q-4")
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "supervisor", "2222")
    queue = win.queue
    win.tabs.setCurrentWidget(queue)
    qtbot.waitUntil(lambda: queue.select_order("ORD-Q-4"), timeout=WAIT_MS)
    seen = []
    win.ctx.jobs.progress.connect(lambda what, done, total: seen.append((what, done, total)))
    win.ctx.jobs.progress.connect(lambda *_: seen.append(("bar visible", win.progress.isVisible(), 0)))
    qtbot.mouseClick(queue.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Evidence written to" in win.statusBar().currentMessage(), timeout=WAIT_MS)
    steps = [(d, t) for w, d, t in seen if w == "Exporting evidence"]
    assert steps == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]  # records, then each of the 3 views
    assert ("bar visible", True, 0) in seen and not win.progress.isVisible()  # shown while running, then gone
    (zip_path,) = (data_dir / "evidence").glob("ORD-Q-4-*.zip")
    with zipfile.ZipFile(zip_path) as zf:
        assert sum(n.startswith("images/") for n in zf.namelist()) == 3 and "records.json" in zf.namelist()
