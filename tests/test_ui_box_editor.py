"""Box correction in the review queue (issue 9) and reference-difference heat maps in its evidence (issue 8).

The seeded item has fixed detector boxes on its side view (a stand-in detector, so the boxes are known) and a
painted patch on the same view; its front view is black, so the quality gate flags it for review.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from station.config import StationConfig, StationSection
from station.domain import DETECTOR_CLASSES, Detections, Frame, ReturnReason, ReturnRequest
from tests.conftest import REPO
from tests.ui_support import WAIT_MS, login, make_window, rows

SKU = "GAD-SPEAKER-M"
SIDE_BOXES = (("scratch", (100.0, 120.0, 180.0, 170.0)), ("dent", (300.0, 200.0, 360.0, 260.0)),
              ("stain", (420.0, 300.0, 470.0, 340.0)))


class FixedDetector:
    """Returns the same boxes for the view at ``index`` and nothing elsewhere."""

    version = "fixed@test"
    class_names = DETECTOR_CLASSES

    def __init__(self, index: int, boxes) -> None:
        self.index, self.boxes = index, boxes

    def detect(self, images):
        out = []
        for i, _ in enumerate(images):
            if i != self.index:
                out.append(Detections.empty(self.class_names))
                continue
            out.append(Detections(np.array([b for _, b in self.boxes], np.float32),
                                  np.array([DETECTOR_CLASSES.index(c) for c, _ in self.boxes], np.int32),
                                  np.full(len(self.boxes), 0.95, np.float32), self.class_names))
        return out


def seed_boxed(data_dir, order_id: str) -> tuple[dict, tuple[int, int, int, int]]:
    """One flagged inspection with known side-view boxes and a painted patch on the side view; returns its row
    and the patch (x1, y1, x2, y2)."""
    from station.app import boot
    from vision.camera import StagedItem
    from vision.compare import segment_item

    st = boot(StationConfig(station=StationSection(data_dir=data_dir)))
    try:
        st.pipeline.detector = FixedDetector(1, SIDE_BOXES)
        req = ReturnRequest(order_id, SKU, ReturnReason.QUALITY_ISSUE, f"U-{order_id}", "live", "live-lily",
                            "soundbee", "zto")
        st.camera.stage(StagedItem(SKU, {}, 2))
        frames = [st.camera.capture(v) for v in st.config.station.views]
        frames[0] = Frame(np.zeros_like(frames[0].image), frames[0].view)  # fails the quality gate: flagged
        side = frames[1].image.copy()
        mask, _, _ = segment_item(side)
        ys, xs = np.nonzero(mask)
        cy, cx = int(ys.mean()), int(xs.mean())
        patch = (cx - 30, cy - 30, cx + 30, cy + 30)
        side[patch[1]:patch[3], patch[0]:patch[2]] = (0, 200, 255)
        frames[1] = Frame(side, frames[1].view)
        rec = st.pipeline.inspect(req, frames, operator="someone").record
        assert rec.decision.review
        return rows(data_dir, order_id)[0], patch
    finally:
        st.close()


def drag(qtbot, view, start, end) -> None:
    """Press, move and release the left button between two points given in image pixels."""
    a, b = view.mapFromScene(*start), view.mapFromScene(*end)
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(view.viewport(), pos=(a + b) / 2)
    qtbot.mouseMove(view.viewport(), pos=b)
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=b)


def _open_item(qtbot, data_dir, order_id):
    win = make_window(qtbot, data_dir)
    login(qtbot, win, "supervisor", "2222")
    queue = win.queue
    win.tabs.setCurrentWidget(queue)
    qtbot.waitUntil(lambda: queue.select_order(order_id), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: queue.evidence is not None and queue.evidence["item"].order_id == order_id,
                    timeout=WAIT_MS)
    return win, queue


def test_supervisor_corrects_boxes_by_keyboard_and_mouse(qtbot, data_dir):
    original, _ = seed_boxed(data_dir, "ORD-B-1")
    detector = [(f["kind"], f["box_xyxy"]) for f in json.loads(original["findings_json"]) if f["source"] == "detector"]
    assert detector == [(c, list(b)) for c, b in SIDE_BOXES]  # the rules kept every box
    win, queue = _open_item(qtbot, data_dir, "ORD-B-1")
    assert queue.boxes_button.isEnabled()
    qtbot.keyClick(queue.table, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)  # the shortcut opens it
    qtbot.waitUntil(lambda: queue.box_editor is not None, timeout=WAIT_MS)
    dlg = queue.box_editor
    assert [s.view_name for s in dlg.scenes] == ["front", "side", "top"]
    assert dlg.boxes() == [{"view": "side", "class": c, "box_xyxy": list(b)} for c, b in SIDE_BOXES]
    assert not dlg.buttons.button(dlg.buttons.StandardButton.Save).isEnabled()  # no reason chosen yet

    dlg.tabs.setCurrentIndex(1)
    view, scene = dlg.views[1], dlg.scenes[1]
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=WAIT_MS)
    qtbot.keyClick(view, Qt.Key.Key_Tab)  # first box
    assert scene.selected_boxes() == [scene.box_items[0]]
    qtbot.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)  # +10 px
    qtbot.keyClick(view, Qt.Key.Key_Down)  # +1 px
    qtbot.keyClick(view, Qt.Key.Key_Tab)  # second box: relabel it
    assert scene.selected_boxes() == [scene.box_items[1]] and dlg.cls.currentData() == "dent"
    dlg.cls.setCurrentIndex(dlg.cls.findData("crack"))
    drag(qtbot, view, (360.0, 260.0), (380.0, 290.0))  # its lower-right corner: resize
    resized = scene.box_items[1].to_json("side")
    assert resized["class"] == "crack" and resized["box_xyxy"] == pytest.approx([300, 200, 380, 290], abs=2)
    qtbot.keyClick(view, Qt.Key.Key_Tab)  # third box: delete it
    assert dlg.cls.currentData() == "stain"
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert len(scene.box_items) == 2 and scene.selected_boxes() == []

    dlg.cls.setCurrentIndex(dlg.cls.findData("tear"))  # the class a new box gets (nothing selected)
    drag(qtbot, view, (20.0, 20.0), (90.0, 70.0))  # on empty image area: draws a box
    assert len(scene.box_items) == 3
    added = scene.box_items[2].to_json("side")
    assert added["class"] == "tear" and added["box_xyxy"] == pytest.approx([20, 20, 90, 70], abs=2)

    expected = [{"view": "side", "class": "scratch", "box_xyxy": [110.0, 121.0, 190.0, 171.0]},
                resized, added]
    assert dlg.boxes() == expected
    dlg.reason.setCurrentIndex(dlg.reason.findData("wrong_class"))
    qtbot.keyClicks(dlg.comment, "dent was a crack")
    save = dlg.buttons.button(dlg.buttons.StandardButton.Save)
    assert save.isEnabled()
    qtbot.mouseClick(save, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(rows(data_dir, "ORD-B-1")) == 2, timeout=WAIT_MS)

    before, correction = rows(data_dir, "ORD-B-1")
    assert before == original  # the inspection itself is never edited
    assert correction["overrides"] == original["record_id"] and correction["operator"] == "supervisor"
    assert correction["override_reason"] == "[supervisor] wrong_class: dent was a crack"
    assert json.loads(correction["decision_json"])["boxes"] == expected
    assert (correction["grade"], correction["disposition"], correction["review"]) == (
        original["grade"], original["disposition"], 1)  # still waits for a decision
    # the item stays in the queue as its corrected record, reselected, with its images
    qtbot.waitUntil(lambda: queue.evidence is not None and queue.evidence["item"].record_id ==
                    correction["record_id"], timeout=WAIT_MS)
    assert sum(t.isVisible() and t.has_image for t in queue.ev_tiles) == 3
    assert "Boxes corrected for ORD-B-1" in win.statusBar().currentMessage()


def test_box_editor_is_translated(qtbot, data_dir):
    from tests.test_ui_i18n import untranslated
    from ui import i18n

    seed_boxed(data_dir, "ORD-B-2")
    win, queue = _open_item(qtbot, data_dir, "ORD-B-2")
    try:
        win.set_language("zh_CN")
        qtbot.mouseClick(queue.boxes_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: queue.box_editor is not None, timeout=WAIT_MS)
        assert untranslated(queue.box_editor) == []
        qtbot.waitUntil(lambda: queue.heat is not None, timeout=WAIT_MS)
        assert untranslated(queue) == []
        # only this page's strings: other pages may be mid-change in the same checkout
        source = "".join((REPO / "ui" / f).read_text() for f in ("box_editor.py", "queue.py", "i18n.py"))
        mine = sorted(m for m in i18n.missing() if (f'"{m}"' if len(m) < 30 else f'"{m[:30]}') in source)
        assert mine == [], f"strings without a zh_CN entry: {mine}"
        queue.box_editor.reject()
    finally:
        i18n.set_language("en")


def test_heat_map_of_the_evidence_shows_the_painted_difference(qtbot, data_dir):
    import cv2

    _, (x1, y1, x2, y2) = seed_boxed(data_dir, "ORD-B-3")
    win, queue = _open_item(qtbot, data_dir, "ORD-B-3")
    qtbot.waitUntil(lambda: queue.heat is not None, timeout=WAIT_MS)
    status, heat, overlay = queue.heat["views"]["side"]
    side_sha = dict(win.ctx.station.store.images_of(queue.evidence["item"].record_id))["side"]
    image = cv2.imread(str(win.ctx.station.store.image_path(side_sha)))
    assert status == "ok" and heat.shape == image.shape[:2]
    bright = heat > 0.5
    painted = np.zeros_like(bright)
    painted[y1:y2, x1:x2] = True
    assert (bright & painted).sum() > 0.5 * painted.sum()  # the patch lights up...
    assert heat[painted].mean() > 3 * heat[~painted].mean()  # ...and stands out from the rest
    assert queue.heat["views"]["front"][0] == "no_item"  # the black view has nothing to compare
    tile = queue.ev_tiles[1]
    plain = tile.image.pixmap().toImage()
    qtbot.keyClick(queue.table, Qt.Key.Key_H)  # overlay on
    assert queue.heat_toggle.isChecked() and tile.image.pixmap().toImage() != plain
    assert "Largest difference" in tile.caption.text()
    assert "No item found" in queue.ev_tiles[0].caption.text()


def test_heat_map_says_when_the_catalogue_has_no_reference(data_dir):
    from vision.catalogue import Catalogue
    from vision.compare import CatalogueComparer, HeatmapStatus, view_heatmap

    cat = Catalogue.load(data_dir / "sample_catalogue")
    res = view_heatmap(CatalogueComparer(cat), np.full((120, 160, 3), 200, np.uint8), "NO-SUCH-SKU")
    assert res.status == HeatmapStatus.NO_REFERENCE and res.heatmap is None


# ------------------------------------------------------------------------------ station.users, no UI


def _store(data_dir):
    from station.records import StationStore

    return StationStore(data_dir / "station.db").open()


def test_an_inspector_may_not_correct_boxes(data_dir):
    from station.users import PermissionDenied, Role, User, correct_boxes

    original, _ = seed_boxed(data_dir, "ORD-B-4")
    store = _store(data_dir)
    try:
        n = store.count()
        with pytest.raises(PermissionDenied, match="correct_boxes"):
            correct_boxes(store, User("ivy", Role.INSPECTOR), original["record_id"], "wrong_class",
                          [{"view": "side", "class": "dent", "box_xyxy": [1, 1, 20, 20]}])
        assert store.count() == n
    finally:
        store.close()
    assert rows(data_dir, "ORD-B-4") == [original]


def test_correct_boxes_checks_its_input_and_the_record(data_dir):
    from station.users import Role, StaleRecord, User, correct_boxes, current_boxes

    original, _ = seed_boxed(data_dir, "ORD-B-5")
    rid, sup = original["record_id"], User("sam", Role.SUPERVISOR)
    store = _store(data_dir)
    try:
        good = {"view": "side", "class": "dent", "box_xyxy": [1, 1, 20, 20]}
        for boxes, reason, why in (([{**good, "view": "inside"}], "wrong_class", "no 'inside' view"),
                                   ([{**good, "class": "smudge"}], "wrong_class", "unknown class"),
                                   ([{**good, "box_xyxy": [20, 1, 1, 20]}], "wrong_class", "x1 < x2"),
                                   ([good], "because", "unknown box correction reason"),
                                   ([good], "other", "needs a comment")):
            with pytest.raises(ValueError, match=why):
                correct_boxes(store, sup, rid, reason, boxes)
        assert store.count() == 1
        new_id = correct_boxes(store, sup, rid, "missed_defect", [good], "  under the label ")
        row = store.get(new_id)
        assert current_boxes(row) == [{"view": "side", "class": "dent", "box_xyxy": [1.0, 1.0, 20.0, 20.0]}]
        assert row["override_reason"] == "[supervisor] missed_defect: under the label"
        assert [v for v, _ in store.images_of(new_id)] == ["front", "side", "top"]
        with pytest.raises(StaleRecord):  # the original is no longer the order's latest record
            correct_boxes(store, sup, rid, "missed_defect", [])
        assert correct_boxes(store, sup, new_id, "false_defect", []) and current_boxes(store.get(new_id))
    finally:
        store.close()
