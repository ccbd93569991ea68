"""Supervisor review queue: flagged items, filters, evidence, approve / change / bulk-approve / export.

Listing, evidence loading and every write run on the station worker; what a user may do is enforced by
station.users (review_queue, approve, record_override raise PermissionDenied for an inspector).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import cv2
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QKeySequence, QShortcut
from PyQt6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFrame, QGridLayout, QHBoxLayout, QHeaderView,
                             QLabel, QPushButton, QScrollArea, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout,
                             QWidget)

from station.domain import DETECTOR_CLASSES, ReturnReason
from station.users import (Permission, QueueItem, approve, bulk_approve, correct_boxes, current_boxes,
                           record_override, review_queue)
from ui.box_editor import BoxEditorDialog
from ui.context import StationContext
from ui.i18n import name, rule_text, tr
from ui.images import heat_overlay, thumbnail, to_qimage
from ui.widgets import HeatLegend, ImageTile, OverrideDialog, data_label

EXPORT_PROGRESS = "Exporting evidence"
AGES = (("Any age", None, None), ("Older than 1 h", 1.0, None), ("Older than 24 h", 24.0, None),
        ("Last hour", None, 1.0))
COLUMNS = ("Age", "Order", "SKU", "Brand", "Streamer", "Reason", "Grade", "Proposed", "Why flagged")
TILE_SIDE = 360  # px: evidence thumbnails and their heat-map overlays
HEAT_NOTES = {"no_reference": "No catalogue reference for {sku}: no heat map",
              "no_item": "No item found in this view: no heat map",
              "not_aligned": "This view does not line up with the reference: no heat map",
              "no_outline": "The product could not be told apart from its background here: no heat map"}


class QueuePage(QWidget):
    message = pyqtSignal(str)
    changed = pyqtSignal()

    def __init__(self, ctx: StationContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("queue")
        self.items: list[QueueItem] = []
        self.evidence: dict | None = None
        self.override_dialog: OverrideDialog | None = None
        self.box_editor: BoxEditorDialog | None = None
        self.heat: dict | None = None  # {"record_id", "views": {view: (status, full-size heat map | None, overlay)}}
        self._heat_comparer = None  # built on the worker when the station's comparer has no reference difference
        self._heat_wanted: str | None = None  # the record whose heat maps are wanted now (read by the worker)
        self._reselect_order: str | None = None  # after a box correction the item's record id changes
        self._loading = False
        self._again = False
        self._build()
        self.retranslate()

    def _build(self) -> None:
        self.filter_labels = [QLabel() for _ in range(4)]
        self.reason = QComboBox()
        self.brand = QComboBox()
        self.streamer = QComboBox()
        self.age = QComboBox()
        for combo in (self.reason, self.brand, self.streamer, self.age):
            combo.currentIndexChanged.connect(lambda _=0: self.refresh())
        self.refresh_button = QPushButton()
        self.refresh_button.clicked.connect(self.refresh)
        filters = QHBoxLayout()
        for label, combo in zip(self.filter_labels, (self.reason, self.brand, self.streamer, self.age)):
            filters.addWidget(label)
            filters.addWidget(combo)
        filters.addStretch(1)
        filters.addWidget(self.refresh_button)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.count = QLabel()

        self.approve_button = QPushButton()
        self.change_button = QPushButton()
        self.bulk_button = QPushButton()
        self.export_button = QPushButton()
        self.approve_button.clicked.connect(self.approve_current)
        self.change_button.clicked.connect(self.change_current)
        self.bulk_button.clicked.connect(self.bulk_approve_selected)
        self.export_button.clicked.connect(self.export_current)
        self.boxes_button = QPushButton()
        self.boxes_button.clicked.connect(self.open_box_editor)
        QShortcut(QKeySequence("Ctrl+B"), self, self.open_box_editor,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        actions = QHBoxLayout()
        for b in (self.approve_button, self.change_button, self.bulk_button, self.boxes_button, self.export_button):
            actions.addWidget(b)
        actions.addStretch(1)
        actions.addWidget(self.count)

        # evidence
        self.evidence_box = QWidget()
        self.ev_title = QLabel()
        self.ev_title.setObjectName("sectionTitle")
        self.ev_order = data_label()
        self.ev_tiles_row = QHBoxLayout()
        self.heat_legend = HeatLegend()
        self.heat_legend.setVisible(False)
        self.ev_tiles: list[ImageTile] = []
        self.heat_toggle = QCheckBox()
        self.heat_toggle.toggled.connect(lambda _=False: self._render_evidence())
        QShortcut(QKeySequence("H"), self, self.heat_toggle.toggle, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.ev_measure_title = QLabel()
        self.ev_measure = QLabel()
        self.ev_measure.setWordWrap(True)
        self.ev_rules_title = QLabel()
        self.ev_rules = QLabel()
        self.ev_rules.setWordWrap(True)
        self.ev_history_title = QLabel()
        self.ev_history = QLabel()
        self.ev_history.setWordWrap(True)
        ev = QVBoxLayout(self.evidence_box)
        ev.addWidget(self.ev_title)
        ev_head = QHBoxLayout()
        ev_head.addWidget(self.ev_order, 1)
        ev_head.addWidget(self.heat_toggle)
        ev.addLayout(ev_head)
        ev.addLayout(self.ev_tiles_row)
        ev.addWidget(self.heat_legend)
        grid = QGridLayout()
        grid.addWidget(self.ev_measure_title, 0, 0)
        grid.addWidget(self.ev_rules_title, 0, 1)
        grid.addWidget(self.ev_history_title, 0, 2)
        grid.addWidget(self.ev_measure, 1, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.ev_rules, 1, 1, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.ev_history, 1, 2, Qt.AlignmentFlag.AlignTop)
        grid.setColumnStretch(1, 2)
        ev.addLayout(grid)
        ev.addStretch(1)

        upper = QWidget()
        up = QVBoxLayout(upper)
        up.setContentsMargins(0, 0, 0, 0)
        up.addLayout(filters)
        up.addWidget(self.table)
        up.addLayout(actions)
        # The evidence scrolls when the pane is short rather than squeezing the tiles (their captions were
        # drawn over the pictures).
        self.evidence_scroll = QScrollArea()
        self.evidence_scroll.setObjectName("evidenceScroll")
        self.evidence_scroll.setWidgetResizable(True)
        self.evidence_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.evidence_scroll.setWidget(self.evidence_box)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(upper)
        split.addWidget(self.evidence_scroll)
        split.setSizes([360, 440])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        self._update_buttons()

    def retranslate(self) -> None:
        for label, text in zip(self.filter_labels, ("Reason", "Brand", "Streamer", "Age")):
            label.setText(tr(text))
        self._fill_filters()
        self.refresh_button.setText(tr("Refresh"))
        self.table.setHorizontalHeaderLabels([tr(c) for c in COLUMNS])
        self.approve_button.setText(tr("Approve"))
        self.approve_button.setToolTip(tr("Accept what the station proposed (writes an override with your name)"))
        self.change_button.setText(tr("Change..."))
        self.bulk_button.setText(tr("Bulk-approve selected"))
        self.export_button.setText(tr("Export evidence"))
        self.boxes_button.setText(tr("Correct boxes..."))
        self.boxes_button.setToolTip(tr("Move, resize, relabel, add or delete the detector's boxes (Ctrl+B); "
                                        "stored as an override with your name"))
        self.heat_toggle.setText(tr("Show heat maps (H)"))
        self.heat_toggle.setToolTip(tr("Overlay where each view differs from the catalogue reference"))
        self.ev_title.setText(tr("Evidence"))
        self.ev_measure_title.setText(tr("Measurements and findings"))
        self.ev_rules_title.setText(tr("Why flagged"))
        self.ev_history_title.setText(tr("Unit history"))
        self.heat_legend.retranslate()
        self._render_table()
        self._render_evidence()
        if self.override_dialog is not None:
            self.override_dialog.retranslate()
        if self.box_editor is not None:
            self.box_editor.retranslate()

    def _fill_filters(self) -> None:
        brands = sorted({i.brand for i in self.ctx.station.catalogue.items.values()}) if self.ctx.station else []
        streamers = sorted({i.streamer for i in self.items if i.streamer} | {self.streamer.currentData() or ""} - {""})
        spec = ((self.reason, [(name("reason", r.value), r.value) for r in ReturnReason]),
                (self.brand, [(b, b) for b in brands]),
                (self.streamer, [(s, s) for s in streamers]),
                (self.age, None))
        for combo, options in spec:
            current = combo.currentIndex() if combo is self.age else combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            if options is None:
                for i, (text, lo, hi) in enumerate(AGES):
                    combo.addItem(tr(text), i)
                combo.setCurrentIndex(max(0, current))
            else:
                combo.addItem(tr("All"), None)
                for text, value in options:
                    combo.addItem(text, value)
                combo.setCurrentIndex(max(0, combo.findData(current)) if current else 0)
            combo.blockSignals(False)

    # ----------------------------------------------------------------------------------------- data
    def refresh(self) -> None:
        if self.ctx.station is None or self.ctx.user is None:
            return
        if self._loading:
            self._again = True  # filters changed while a listing was running: list again when it ends
            return
        self._loading, self._again = True, False
        ctx, user = self.ctx, self.ctx.user
        _, lo, hi = AGES[self.age.currentData() or 0]
        reason, brand, streamer = self.reason.currentData(), self.brand.currentData(), self.streamer.currentData()

        def work():
            return review_queue(ctx.station.store, user, reason, brand, streamer, lo, hi)

        def done(items):
            self._loading = False
            selected = self.selected_ids()
            self.items = items
            streamer_now = self.streamer.currentData()
            self._fill_filters()
            self.streamer.blockSignals(True)
            self.streamer.setCurrentIndex(max(0, self.streamer.findData(streamer_now)) if streamer_now else 0)
            self.streamer.blockSignals(False)
            self._render_table(selected)
            if self._reselect_order is not None:
                order, self._reselect_order = self._reselect_order, None
                self.select_order(order)
            if self._again:
                self.refresh()

        def failed(exc):
            self._loading = False
            self.message.emit(str(exc))
            if self._again:
                self.refresh()

        self.ctx.jobs.submit(work, done, failed)

    def _render_table(self, selected: list[str] | None = None) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.items))
        for r, it in enumerate(self.items):
            why = " ".join(x for x in it.rules_fired if not x.startswith(("G-", "L-", "D-"))) or "-"
            cells = (_age(it.age_hours), it.order_id, it.sku, it.brand or "-", it.streamer or "-",
                     name("reason", it.reason), it.grade, name("disposition", it.proposed_disposition), why)
            for c, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setData(Qt.ItemDataRole.UserRole, it.record_id)
                self.table.setItem(r, c, cell)
            if selected and it.record_id in selected:
                self.table.selectRow(r)
        self.table.blockSignals(False)
        self.count.setText(tr("{n} item(s) waiting", n=len(self.items)))
        self._selection_changed()

    def selected_ids(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.items[r].record_id for r in rows if r < len(self.items)]

    def current(self) -> QueueItem | None:
        ids = self.selected_ids()
        return next((i for i in self.items if ids and i.record_id == ids[0]), None)

    def select_order(self, order_id: str) -> bool:
        for r, it in enumerate(self.items):
            if it.order_id == order_id:
                self.table.clearSelection()
                self.table.selectRow(r)
                return True
        return False

    def _update_buttons(self) -> None:
        n = len(self.selected_ids())
        self.approve_button.setEnabled(n == 1)
        self.change_button.setEnabled(n == 1)
        self.export_button.setEnabled(n == 1)
        self.bulk_button.setEnabled(n >= 1)
        user = self.ctx.user
        self.boxes_button.setEnabled(n == 1 and user is not None and user.can(Permission.CORRECT_BOXES))

    def _selection_changed(self) -> None:
        self._update_buttons()
        item = self.current()
        if item is None:
            self.evidence = None
            self._render_evidence()
            return
        ctx = self.ctx

        def work():
            store = ctx.station.store
            row = store.get(item.record_id)
            images = [(view, None if img is None else to_qimage(thumbnail(img, TILE_SIDE)))
                      for view, img in stored_views(store, item.record_id)]
            history = store.history(item.unit_code) if item.unit_code else []
            return {"item": item, "findings": json.loads(row["findings_json"]), "images": images,
                    "history": [(h["created_at"], h["order_id"], h["grade"], h["disposition"], h["operator"],
                                 bool(h["overrides"])) for h in history]}

        def done(ev):
            if self.current() is not None and self.current().record_id == ev["item"].record_id:
                self.evidence = ev
                if self.heat is not None and self.heat["record_id"] != ev["item"].record_id:
                    self.heat = None
                self._render_evidence()
                self._load_heatmaps(ev["item"])

        self.ctx.jobs.submit(work, done, lambda exc: self.message.emit(str(exc)))

    def _comparer(self, station):
        """The station's catalogue comparer, or (a basic comparer has no reference difference) one built once
        for the heat maps. Worker thread only."""
        from vision.compare import CatalogueComparer

        if isinstance(station.pipeline.comparer, CatalogueComparer):
            return station.pipeline.comparer
        if self._heat_comparer is None or self._heat_comparer.catalogue is not station.catalogue:
            c = station.config.comparer
            self._heat_comparer = CatalogueComparer(station.catalogue, c.identity_threshold, c.bench_grey)
        return self._heat_comparer

    def _load_heatmaps(self, item: QueueItem) -> None:
        """Reference-difference heat map of each stored view, on the worker (alignment takes a while)."""
        if self.heat is not None and self.heat["record_id"] == item.record_id:
            return
        ctx = self.ctx
        self._heat_wanted = item.record_id

        def work():
            from vision.compare import view_heatmap

            if self._heat_wanted != item.record_id:
                return None  # the supervisor moved on while this waited: skip the slow part
            store, views = ctx.station.store, {}
            comparer = self._comparer(ctx.station)
            for view, img in stored_views(store, item.record_id):
                if img is None:
                    continue
                res = view_heatmap(comparer, img, item.sku, view)
                overlay = None if res.heatmap is None else to_qimage(thumbnail(heat_overlay(img, res.heatmap),
                                                                               TILE_SIDE))
                views[view] = (res.status.value, res.heatmap, overlay)
            return {"record_id": item.record_id, "views": views}

        def done(heat):
            if heat is not None and self.evidence is not None and self.evidence["item"].record_id == heat["record_id"]:
                self.heat = heat
                self._render_evidence()

        self.ctx.jobs.submit(work, done, lambda exc: self.message.emit(tr("Heat maps failed: {error}", error=exc)))

    def _render_evidence(self) -> None:
        ev = self.evidence
        images = ev["images"] if ev else []
        while len(self.ev_tiles) < len(images):
            tile = ImageTile(240, 180)
            self.ev_tiles.append(tile)
            self.ev_tiles_row.addWidget(tile)
        self.heat_legend.setVisible(bool(images) and self.heat_toggle.isChecked())
        for i, tile in enumerate(self.ev_tiles):
            tile.setVisible(i < len(images))
            if i < len(images):
                view, qimg = images[i]
                tile.title.setText(name("view", view))
                status, heat, overlay = self._heat_of(view)
                tile.set_image(overlay if overlay is not None and self.heat_toggle.isChecked() else qimg)
                if status is None:
                    tile.set_caption(tr("Computing heat map..."))
                elif status == "ok":
                    tile.set_caption(tr("Largest difference from the reference: {v:.2f}", v=float(heat.max())))
                else:
                    tile.set_caption(tr(HEAT_NOTES[status], sku=ev["item"].sku), "bad")
        if ev is None:
            for w in (self.ev_order, self.ev_measure, self.ev_rules, self.ev_history):
                w.setText("")
            return
        it = ev["item"]
        self.ev_order.setText(f"{it.order_id} · {it.sku} · {it.unit_code or '-'} · {it.brand or '-'} · "
                              f"{it.streamer or '-'}")
        lines = []
        for f in ev["findings"]:
            extra = ""
            if f["kind"] == "wrong_item" and "value" in f:
                extra = " · " + tr("identity score {v:.2f}", v=f["value"])
            elif f["kind"] == "colour_mismatch" and "value" in f:
                extra = f" · ΔE00 {f['value']:.1f}"
            elif f["kind"] == "damage" and "value" in f:
                extra = tr(" · {v:.2f}x the SKU's good-appearance threshold", v=f["value"])
            where = f" ({name('view', f['view'])})" if f.get("view") else ""
            lines.append(f"{name('finding', f['kind'])} {f['score']:.2f}{where}{extra}")
        self.ev_measure.setText("\n".join(lines) or tr("No findings"))
        self.ev_rules.setText("\n".join(f"• {rule_text(r)}" for r in it.reasons))
        self.ev_history.setText("\n".join(
            tr("{when}: {order} grade {grade}, {disposition}{by}", when=when[:16].replace("T", " "), order=order,
               grade=grade, disposition=name("disposition", disp),
               by=(" · " + tr("override by {who}", who=who)) if over else "")
            for when, order, grade, disp, who, over in ev["history"]) or tr("No earlier records"))

    def _heat_of(self, view: str) -> tuple[str | None, object, object]:
        ev, heat = self.evidence, self.heat
        if ev is None or heat is None or heat["record_id"] != ev["item"].record_id:
            return None, None, None
        return heat["views"].get(view, ("no_item", None, None))

    # ----------------------------------------------------------------------------------------- actions
    def _write(self, fn, done_text: str) -> None:
        def done(_):
            self.message.emit(done_text)
            self.changed.emit()
            self.ctx.records_changed.emit()
            self.refresh()

        self.ctx.jobs.submit(fn, done, lambda exc: self.message.emit(str(exc)))

    def approve_current(self) -> None:
        item, ctx, user = self.current(), self.ctx, self.ctx.user
        if item is None:
            return
        self._write(lambda: approve(ctx.station.store, user, item.record_id, ctx.config.lanes),
                    tr("Approved {order}", order=item.order_id))

    def bulk_approve_selected(self) -> None:
        ids, ctx, user = self.selected_ids(), self.ctx, self.ctx.user
        if not ids:
            return
        self._write(lambda: bulk_approve(ctx.station.store, user, ids, ctx.config.lanes),
                    tr("Approved {n} item(s)", n=len(ids)))

    def change_current(self) -> None:
        item = self.current()
        if item is None:
            return
        if self.override_dialog is not None:
            return
        user = self.ctx.user
        if user is None or not user.can(Permission.APPROVE_FLAGGED):
            self.message.emit(tr("Only a supervisor can change an item flagged for review"))
            return
        dlg = OverrideDialog(item.grade, item.proposed_disposition, self,
                             save=lambda values, done, failed, it=item: self._save_change(it, values, done, failed),
                             flagged=True)
        self.override_dialog = dlg
        dlg.finished.connect(lambda code: self._release_dialog("override_dialog", code))
        dlg.open()

    def _release_dialog(self, attr: str, code: int):
        """Let go of the dialog held in ``attr`` (deleted later); return it if it was accepted, else None."""
        dlg = getattr(self, attr)
        setattr(self, attr, None)
        if dlg is None:
            return None
        dlg.deleteLater()
        return dlg if code == dlg.DialogCode.Accepted else None

    def _save_change(self, item: QueueItem, values, done, failed) -> None:
        """The change dialog's Save: it closes once the override is written; a refusal keeps what was typed."""
        reason, comment, grade, disposition = values
        ctx, user = self.ctx, self.ctx.user

        def saved(_):
            done()
            self.message.emit(tr("Changed {order}", order=item.order_id))
            self.changed.emit()
            self.ctx.records_changed.emit()
            self.refresh()

        self.ctx.jobs.submit(lambda: record_override(ctx.station.store, user, item.record_id, reason, comment, grade,
                                                     disposition, ctx.config.lane_for(disposition)),
                             saved, lambda exc: failed(str(exc)))

    def open_box_editor(self) -> None:
        """Load the full-size views and the record's boxes on the worker, then open the editor."""
        item, ctx, user = self.current(), self.ctx, self.ctx.user
        if item is None or self.box_editor is not None or len(self.selected_ids()) != 1:
            return
        if user is None or not user.can(Permission.CORRECT_BOXES):
            self.message.emit(tr("Only a supervisor can correct boxes"))
            return

        def work():
            store = ctx.station.store
            row = store.get(item.record_id)
            views = [(view, to_qimage(img)) for view, img in stored_views(store, item.record_id) if img is not None]
            classes = tuple(getattr(ctx.station.pipeline.detector, "class_names", ()) or DETECTOR_CLASSES)
            return item, views, current_boxes(row), classes

        def done(result):
            it, views, boxes, classes = result
            if self.box_editor is not None or self.current() is None or self.current().record_id != it.record_id:
                return
            dlg = BoxEditorDialog(views, boxes, classes, it.order_id, self)
            self.box_editor = dlg
            dlg.finished.connect(lambda code, i=it, c=classes: self._box_editor_closed(code, i, c))
            dlg.open()

        self.ctx.jobs.submit(work, done, lambda exc: self.message.emit(str(exc)))

    def _box_editor_closed(self, code: int, item: QueueItem, classes: tuple[str, ...]) -> None:
        dlg = self._release_dialog("box_editor", code)
        if dlg is None:
            return
        reason, comment, boxes = dlg.values()
        ctx, user = self.ctx, self.ctx.user
        self._reselect_order = item.order_id
        self._write(lambda: correct_boxes(ctx.station.store, user, item.record_id, reason, boxes, comment, classes),
                    tr("Boxes corrected for {order}", order=item.order_id))

    def export_current(self) -> None:
        """The signed evidence bundle of the selected item's order (station.evidence.build_bundle, what
        `station evidence` writes): third parties check it with `station verify-bundle --public-key`."""
        item, ctx = self.current(), self.ctx
        if item is None:
            return
        out_dir = ctx.config.station.data_dir / "evidence"
        progress = ctx.jobs.reporter(EXPORT_PROGRESS)

        def work() -> Path:
            return export_evidence(ctx.station.store, item.order_id, out_dir, progress)

        self.ctx.jobs.submit(work, lambda p: self.message.emit(tr("Evidence bundle written to {path}", path=str(p))),
                             lambda exc: self.message.emit(tr("Evidence not exported: {error}", error=exc)))


def stored_views(store, record_id: str) -> list[tuple[str, "np.ndarray | None"]]:
    """(view, BGR image or None when it is gone from disk) of a record, override chains followed. Worker only."""
    return [(view, cv2.imread(str(store.image_path(sha)), cv2.IMREAD_COLOR))
            for view, sha in store.images_of(record_id)]


def bundle_path(out_dir: Path, order_id: str, stamp: str) -> Path:
    """``<out_dir>/<order>-<UTC time>.zip``; characters a file name cannot hold become '_'."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", order_id) or "order"
    return out_dir / f"{safe}-{stamp}.zip"


def export_evidence(store, order_id: str, out_dir: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the order's signed evidence bundle into ``out_dir`` (worker thread). build_bundle is one step
    (it has no progress of its own): ``progress`` goes 0/1, then 1/1 when done or failed."""
    import datetime as dt

    from station.evidence import build_bundle

    report = progress or (lambda done, total: None)
    report(0, 1)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = bundle_path(out_dir, order_id, dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
        build_bundle(store.db, store.image_dir, store.evidence.key, order_id, path)  # writes .tmp, then renames
    finally:
        report(1, 1)  # the bar goes away on failure too
    return path


def _age(hours: float) -> str:
    if hours < 1:
        return tr("{n} min", n=int(hours * 60))
    if hours < 48:
        return tr("{n} h", n=int(hours))
    return tr("{n} d", n=int(hours / 24))
