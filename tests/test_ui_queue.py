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


def test_evidence_export_writes_the_signed_bundle_that_verifies(qtbot, data_dir):
    """Issue 23: the queue's export is station.evidence's signed bundle, not an unsigned zip: it passes the
    check `station verify-bundle --public-key` runs, with the station's own public key."""
    from station.evidence import StationKey, verify_bundle

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
    qtbot.waitUntil(lambda: "Evidence bundle written to" in win.statusBar().currentMessage(), timeout=WAIT_MS)
    assert [(d, t) for w, d, t in seen if w == "Exporting evidence"] == [(0, 1), (1, 1)]
    assert ("bar visible", True, 0) in seen and not win.progress.isVisible()  # shown while running, then gone
    (zip_path,) = (data_dir / "evidence").glob("ORD-Q-4-*.zip")
    assert str(zip_path) in win.statusBar().currentMessage()
    public_pem = StationKey(data_dir / "keys" / "station_ed25519.pem").load().public_pem()  # `station key export`
    res = verify_bundle(zip_path, public_pem)
    assert (res["status"], res["ok"], res["order_id"], res["problems"]) == ("verified", True, "ORD-Q-4", [])
    assert res["records"] == 1 and res["images_checked"] == 3
    assert list((data_dir / "evidence").glob("*.tmp")) == []


def test_evidence_tiles_keep_captions_under_the_pictures_and_the_heat_map_has_a_legend(qtbot, data_dir):
    seed_flagged(data_dir, "ORD-Q-5")
    win = make_window(qtbot, data_dir)
    win.resize(1280, 720)  # a short screen: the evidence pane gets little height
    login(qtbot, win, "supervisor", "2222")
    queue = win.queue
    win.tabs.setCurrentWidget(queue)
    qtbot.waitUntil(lambda: queue.select_order("ORD-Q-5"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: queue.evidence is not None, timeout=WAIT_MS)
    assert not queue.heat_legend.isVisible()
    queue.heat_toggle.setChecked(True)
    qtbot.waitUntil(lambda: queue.heat is not None, timeout=WAIT_MS)
    qtbot.wait(50)
    tiles = [t for t in queue.ev_tiles if t.isVisible()]
    assert len(tiles) == 3
    for tile in tiles:
        assert tile.caption.text()
        assert tile.caption.geometry().top() >= tile.image.geometry().bottom(), "caption drawn over the picture"
        assert tile.caption.height() >= tile.caption.heightForWidth(tile.caption.width())
        assert tile.image.height() == 180 and tile.caption.geometry().bottom() <= tile.contentsRect().bottom()
    # A caption that wraps to several lines (a longer note, another language, a wider font) grows its tile
    # and the pane (which scrolls), never into the picture.
    long_note = "This view does not line up with the reference: no heat map " * 3
    tiles[0].set_caption(long_note, "bad")
    qtbot.wait(100)
    assert tiles[0].caption.text() == long_note
    assert tiles[0].caption.geometry().top() >= tiles[0].image.geometry().bottom(), "caption over the picture"
    assert tiles[0].caption.height() >= tiles[0].caption.heightForWidth(tiles[0].caption.width())
    legend = queue.heat_legend
    assert legend.isVisible() and legend.low.text() and legend.high.text()
    scale = legend.scale.pixmap().toImage()
    left, right = scale.pixelColor(1, 5), scale.pixelColor(scale.width() - 2, 5)
    assert left.blue() > left.red() and right.red() > right.blue()  # blue = same, red = differs (JET)
    queue.heat_toggle.setChecked(False)
    assert not legend.isVisible()
