"""Inspector bench: scan -> guided capture (quality gate, retake prompts) -> decision -> accept / override.

A live camera view (ui.live) with the quality gate's verdict runs while the bench is idle or waits for a
capture; it pauses while a capture or an inspection uses the camera, and while the page is hidden or the
window minimised.

Keyboard only: type or scan the RMA code and press Enter; Space captures the next view; Enter accepts;
F8 overrides; Esc cancels the item; F2 stages the next simulated return (simulated camera). Every camera,
pipeline and database call runs on the station worker thread (ui.jobs), never on the UI thread.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Callable

import cv2
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QHideEvent, QKeyEvent, QShowEvent
from PyQt6.QtWidgets import (QApplication, QFrame, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                             QScrollArea, QSizePolicy, QVBoxLayout, QWidget)

from station.domain import Frame, ReturnRequest
from station.users import Permission, approve, record_override
from ui.context import StationContext
from ui.i18n import name, rule_text, tr
from ui.images import draw_boxes, thumbnail, to_qimage
from ui.live import LivePicture, LiveTile, LiveView
from ui.scan import RmaError, format_rma, parse_rma
from ui.widgets import ImageTile, OverrideDialog, data_label

MAX_RETAKES = 2  # after this many failed retakes the frame is kept and the item goes to manual review
WHY_MIN_WIDTH = 360  # px: the rules column never narrows below this (long rule lines wrap, then scroll)


class BenchPage(QWidget):
    item_finished = pyqtSignal(str)  # record id
    message = pyqtSignal(str)

    def __init__(self, ctx: StationContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("bench")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.state = "idle"  # idle, starting, capturing, busy, inspecting, decided
        self.request: ReturnRequest | None = None
        self.item = None
        self.views: list[str] = list(ctx.config.station.views)
        self.frames: dict[str, Frame] = {}
        self.attempts: dict[str, int] = {}
        self.result = None
        self.override_dialog: OverrideDialog | None = None
        self._prompt: Callable[[], str] = lambda: tr("Scan an RMA code and press Enter")
        self._prompt_state = ""
        self._live_caption: Callable[[], str] = lambda: ""
        self._live_caption_state = ""
        self.live = LiveView(ctx, self._live_wanted, self)
        self.live.picture.connect(self._show_live)
        self.live.active_changed.connect(self._live_active)
        self.live.failed.connect(self._live_failed)
        self._build()
        self.retranslate()

    # ----------------------------------------------------------------------------------------- layout
    def _build(self) -> None:
        self.scan_label = QLabel()
        self.scan = QLineEdit()
        self.scan.setObjectName("scan")
        self.scan.returnPressed.connect(self.start_from_scan)
        self.sim_button = QPushButton()
        self.sim_button.clicked.connect(self.next_simulated)
        self.sim_button.setVisible(self.ctx.simulated)
        top = QHBoxLayout()
        top.addWidget(self.scan_label)
        top.addWidget(self.scan, 1)
        top.addWidget(self.sim_button)

        self.prompt = QLabel()
        self.prompt.setObjectName("prompt")
        self.prompt.setWordWrap(True)

        self.info_labels = {k: QLabel() for k in ("order", "sku", "reason", "unit", "brand", "streamer")}
        self.info_values = {k: data_label() for k in self.info_labels}
        info = QGridLayout()
        for i, k in enumerate(self.info_labels):
            info.addWidget(self.info_labels[k], i // 3, (i % 3) * 2)
            info.addWidget(self.info_values[k], i // 3, (i % 3) * 2 + 1)
            # Column widths from the stretch factors alone, never from the item's text: the row stays put from
            # one item to the next (a long product name is cut, its full text is the tooltip).
            self.info_values[k].setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        for col in range(6):
            info.setColumnStretch(col, 0 if col % 2 == 0 else 1)

        self.tiles = {v: ImageTile() for v in self.views}
        self.reference = ImageTile()
        self.reference.setObjectName("reference")
        tiles = QHBoxLayout()
        for t in self.tiles.values():
            tiles.addWidget(t)
        sep = QFrame()
        sep.setFrameShape(QFrame.Shape.VLine)
        tiles.addWidget(sep)
        tiles.addWidget(self.reference)
        tiles.addStretch(1)

        self.live_tile = LiveTile()
        self.live_tile.setObjectName("liveView")

        self.decision = QFrame()
        self.decision.setObjectName("decision")
        self.grade_title = QLabel()
        self.grade = data_label()
        self.grade.setObjectName("grade")
        self.disposition = QLabel()
        self.disposition.setObjectName("disposition")
        self.review_banner = QLabel()
        self.review_banner.setObjectName("reviewBanner")
        self.liability_title = QLabel()
        self.liability = QLabel()
        self.liability.setWordWrap(True)
        self.rules_title = QLabel()
        self.rules = QLabel()
        self.rules.setObjectName("rules")
        self.rules.setWordWrap(True)
        self.rules.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # The rules that fired can be many and long: they wrap at word boundaries in a column that keeps a
        # readable width and scroll when taller than the panel, instead of being cut.
        self.rules_scroll = QScrollArea()
        self.rules_scroll.setObjectName("rulesScroll")
        self.rules_scroll.setWidgetResizable(True)
        self.rules_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.rules_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.rules_scroll.setMinimumWidth(WHY_MIN_WIDTH)
        self.rules_scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.rules_scroll.setWidget(self.rules)
        self.rules.setAutoFillBackground(False)  # setWidget turned it on: keep the decision panel's colour
        self.rules_scroll.viewport().setAutoFillBackground(False)
        self.measures = QLabel()
        left = QVBoxLayout()
        left.addWidget(self.grade_title)
        left.addWidget(self.grade)
        left.addStretch(1)
        mid = QVBoxLayout()
        mid.addWidget(self.review_banner)
        mid.addWidget(self.disposition)
        mid.addWidget(self.measures)
        mid.addWidget(self.liability_title)
        mid.addWidget(self.liability)
        mid.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(self.rules_title)
        right.addWidget(self.rules_scroll, 1)
        dec = QHBoxLayout(self.decision)
        dec.addLayout(left)
        dec.addLayout(mid, 2)
        dec.addLayout(right, 3)

        self.accept_button = QPushButton()
        self.override_button = QPushButton()
        self.cancel_button = QPushButton()
        self.accept_button.clicked.connect(self.accept_item)
        self.override_button.clicked.connect(self.open_override)
        self.cancel_button.clicked.connect(self.cancel_item)
        buttons = QHBoxLayout()
        for b in (self.accept_button, self.override_button, self.cancel_button, self.sim_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys go to the bench, Space/Enter never click a button
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.override_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        self.keys = QLabel()
        self.keys.setObjectName("keys")
        buttons.addWidget(self.keys)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.prompt)
        lay.addLayout(info)
        lay.addLayout(tiles)
        middle = QHBoxLayout()
        middle.addWidget(self.live_tile, 2)
        middle.addWidget(self.decision, 3)
        self.decision.setMinimumWidth(WHY_MIN_WIDTH * 2)  # grade, disposition and liability beside the rules
        lay.addLayout(middle, 1)
        lay.addLayout(buttons)
        self._update_buttons()

    def retranslate(self) -> None:
        self.scan_label.setText(tr("RMA code"))
        self.scan.setPlaceholderText(tr("Scan or type the RMA code, then Enter"))
        self.sim_button.setText(tr("Next simulated return (F2)"))
        self.sim_button.setToolTip(tr("Put the next simulated return on the bench and fill in its RMA code"))
        for k, text in (("order", "Order"), ("sku", "SKU"), ("reason", "Reason"), ("unit", "Unit code"),
                        ("brand", "Brand"), ("streamer", "Streamer")):
            self.info_labels[k].setText(tr(text))
        self.reference.title.setText(tr("Catalogue reference"))
        self.live_tile.title.setText(tr("Live camera"))
        self._set_live_caption(self._live_caption, self._live_caption_state)
        self.grade_title.setText(tr("Grade"))
        self.liability_title.setText(tr("Liability"))
        self.rules_title.setText(tr("Why (rules that fired)"))
        self.accept_button.setText(tr("Accept (Enter)"))
        self.override_button.setText(tr("Override (F8)"))
        self.cancel_button.setText(tr("Cancel item (Esc)"))
        self.keys.setText(tr("Space: capture · Enter: accept · F8: override · Esc: cancel"))
        if self.request is not None:
            self.info_values["reason"].setText(name("reason", self.request.reason.value))
        for i, view in enumerate(self.views):
            self.tiles[view].title.setText(tr("View {n}: {view}", n=i + 1, view=name("view", view)))
        self._render_captions()
        self._render_decision()
        self._set_prompt(self._prompt, self._prompt_state)
        if self.override_dialog is not None:
            self.override_dialog.retranslate()

    # ----------------------------------------------------------------------------------------- helpers
    def _set_prompt(self, fn: Callable[[], str], state: str = "") -> None:
        self._prompt, self._prompt_state = fn, state
        self.prompt.setText(fn())
        self.prompt.setProperty("state", state)
        self.prompt.style().unpolish(self.prompt)
        self.prompt.style().polish(self.prompt)

    def may_override(self) -> bool:
        """Whether the logged-in user may change the decided item (a flagged one needs a supervisor)."""
        user = self.ctx.user
        if user is None or not user.can(Permission.OVERRIDE):
            return False
        flagged = self.result is not None and self.result.record.decision.review
        return not flagged or user.can(Permission.APPROVE_FLAGGED)

    def _update_buttons(self) -> None:
        decided = self.state == "decided"
        self.accept_button.setEnabled(decided)
        self.override_button.setEnabled(decided and self.may_override())
        self.override_button.setToolTip("" if not decided or self.may_override() else
                                        tr("Only a supervisor can change an item flagged for review"))
        self.cancel_button.setEnabled(self.state not in ("idle", "inspecting"))

    def _error(self, exc: Exception) -> None:
        self.message.emit(str(exc))
        if self.state in ("starting",):
            self.state = "idle"
            self.scan.setFocus()
        elif self.state == "busy":
            self.state = "capturing"
        elif self.state == "inspecting":
            self.state = "capturing"
        self._set_prompt(lambda e=str(exc): tr("Error: {error}", error=e), "bad")
        self._update_buttons()

    def current_view(self) -> str | None:
        return next((v for v in self.views if v not in self.frames), None)

    # ----------------------------------------------------------------------------------------- live view
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.live.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.live.stop()  # another tab, or the login page; a minimised window is caught by _live_wanted

    def _live_wanted(self) -> tuple[bool, str | None]:
        """Live while the bench is idle or waits for the operator to capture; never while the camera is busy."""
        window = self.window()
        active = (self.isVisible() and not window.isMinimized() and self.state in ("idle", "capturing"))
        return active, (self.current_view() if self.state == "capturing" else None)

    def _set_live_caption(self, fn: Callable[[], str], state: str = "") -> None:
        self._live_caption, self._live_caption_state = fn, state
        text, cap = fn(), self.live_tile.caption
        if text != cap.text() or state != (cap.property("state") or ""):  # re-polishing 9 times a second is waste
            self.live_tile.set_caption(text, state)

    def _show_live(self, pic: LivePicture) -> None:
        self.live_tile.set_image(pic.image)
        v = pic.verdict
        if self.state != "capturing":
            self._set_live_caption(lambda: tr("Live"))
        elif v.ok:
            self._set_live_caption(lambda: tr("Live: ready to capture (Space)"), "ok")
        else:
            self._set_live_caption(lambda p=v.problems: tr("Live: {problems}, adjust before capturing",
                                                          problems="; ".join(_problem_words(x) for x in p)), "bad")

    def _live_active(self, active: bool) -> None:
        if not active and self.state not in ("starting", "busy"):  # a capture is a blink: keep the picture
            self._set_live_caption(lambda: tr("Live view paused"))

    def _live_failed(self, error: str) -> None:
        self.live_tile.set_image(None)
        if error:
            self._set_live_caption(lambda e=error: tr("Live view unavailable: {error}", error=e), "bad")
        else:
            self._set_live_caption(lambda: tr("This camera has no live view"))

    # ----------------------------------------------------------------------------------------- keys
    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_F2:
            self.next_simulated()
        elif key == Qt.Key.Key_Space and self.state == "capturing":
            self.capture()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.state == "decided":
            self.accept_item()
        elif key == Qt.Key.Key_F8 and self.state == "decided":
            self.open_override()
        elif key == Qt.Key.Key_Escape and self.state not in ("idle", "inspecting"):
            self.cancel_item()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # ----------------------------------------------------------------------------------------- flow
    def next_simulated(self) -> None:
        if self.state not in ("idle",):
            return
        sim = self.ctx.next_simulated()
        if sim is None:
            return
        self.scan.setText(format_rma(sim.request))
        self.scan.setFocus()

    def start_from_scan(self) -> None:
        if self.state != "idle" or self.ctx.station is None:
            return
        try:
            request = parse_rma(self.scan.text())
        except RmaError as exc:
            self._set_prompt(lambda k=exc.key, a=exc.arg: tr("Scan not understood: {problem}", problem=tr(k))
                             + (f" ({a})" if a else ""), "bad")
            self.scan.selectAll()
            return
        self.start_item(request)

    def start_item(self, request: ReturnRequest) -> None:
        from vision.camera import StagedItem

        self.state = "starting"
        self._update_buttons()
        ctx = self.ctx
        sim = ctx.find_simulated(request.order_id)

        def work():
            st = ctx.station
            item = st.catalogue.get(request.sku)
            req = request if request.brand else dataclasses.replace(request, brand=item.brand)
            if hasattr(st.camera, "stage"):  # a simulated bench: put the item on it
                st.camera.stage(sim.staged if sim is not None else
                                StagedItem(req.sku, {}, zlib.crc32(req.order_id.encode())))
            ref = None
            if item.reference_images:
                img = cv2.imread(str(st.catalogue.image_path(item)), cv2.IMREAD_COLOR)
                ref = None if img is None else to_qimage(thumbnail(img))
            earlier = len(st.store.history(req.unit_code)) if req.unit_code else 0
            return req, item, ref, earlier

        self.ctx.jobs.submit(work, self._started, self._error)

    def _started(self, result) -> None:
        req, item, ref, earlier = result
        self.request, self.item = req, item
        self.frames, self.attempts, self.result = {}, {}, None
        for key, value in (("order", req.order_id), ("sku", f"{req.sku}  {item.name}"), ("unit", req.unit_code),
                           ("brand", req.brand), ("streamer", req.streamer)):
            self.info_values[key].setText(value or "-")
            self.info_values[key].setToolTip(value or "")
        self.info_values["reason"].setText(name("reason", req.reason.value))
        self.reference.set_image(ref)
        self.reference.set_caption("")
        self._earlier = earlier
        for tile in self.tiles.values():
            tile.set_image(None)
        self._render_captions()
        self._render_decision()
        self.state = "capturing"
        self._prompt_capture()
        self._update_buttons()
        self.setFocus()

    def _prompt_capture(self) -> None:
        view = self.current_view()
        if view is None:
            return
        n = self.views.index(view) + 1
        tries = self.attempts.get(view, 0)
        if tries:
            problems = self._last_problems
            self._set_prompt(lambda: tr("Retake view {n}/{total} ({view}): {problems}. Press Space",
                                        n=n, total=len(self.views), view=name("view", view),
                                        problems=problems), "bad")
        else:
            self._set_prompt(lambda: tr("Capture view {n}/{total} ({view}): press Space",
                                        n=n, total=len(self.views), view=name("view", view)))

    def capture(self) -> None:
        view = self.current_view()
        if view is None or self.state != "capturing":
            return
        self.state = "busy"
        ctx = self.ctx

        def work():
            st = ctx.station
            frame = st.camera.capture(view)
            verdict = st.pipeline.quality_gate.check(frame.image)
            return frame, verdict, to_qimage(thumbnail(frame.image))

        self.ctx.jobs.submit(work, lambda r: self._captured(view, r), self._error)

    def _captured(self, view: str, result) -> None:
        frame, verdict, qimg = result
        if self.state != "busy":
            return  # cancelled meanwhile
        self.tiles[view].set_image(qimg)
        tries = self.attempts.get(view, 0)
        if verdict.ok or tries >= MAX_RETAKES:
            self.frames[view] = frame
            self._verdicts = {**getattr(self, "_verdicts", {}), view: verdict}
        else:
            self.attempts[view] = tries + 1
            self._last_problems = "; ".join(_problem_words(p) for p in verdict.problems)
        self._verdicts = {**getattr(self, "_verdicts", {}), view: verdict}
        self._render_captions()
        if self.current_view() is None:
            self.inspect()
        else:
            self.state = "capturing"
            self._prompt_capture()

    def inspect(self) -> None:
        self.state = "inspecting"
        self._update_buttons()
        self._set_prompt(lambda: tr("Inspecting..."))
        self._set_live_caption(lambda: tr("Live view paused"))  # the live view saw a capture blink: no event
        ctx, request, user = self.ctx, self.request, self.ctx.user
        frames = [self.frames[v] for v in self.views]

        def work():
            res = ctx.station.pipeline.inspect(request, frames, operator=user.username if user else None)
            annotated = {}
            for f in frames:
                boxes = [(x.kind, x.score, x.box_xyxy) for x in res.findings if x.view == f.view and x.box_xyxy]
                annotated[f.view] = (to_qimage(thumbnail(draw_boxes(f.image, boxes))), boxes)
            return res, annotated

        self.ctx.jobs.submit(work, self._inspected, self._error)

    def _inspected(self, result) -> None:
        res, annotated = result
        self.result = res
        self._annotated = annotated
        for view, (qimg, _) in annotated.items():
            self.tiles[view].set_image(qimg)
        self.state = "decided"
        self.live_tile.hide()  # the decision needs the room; the live view is paused until the next item anyway
        self._render_captions()
        self._render_decision()
        d = res.record.decision
        if d.review:
            QApplication.beep()  # the sound cue; the colour cue is the decision panel
            if self.ctx.user is not None and self.ctx.user.can(Permission.APPROVE_FLAGGED):
                self._set_prompt(lambda: tr("Manual review: Enter approves the proposal, F8 changes it"), "review")
            else:
                # Said now, before any form is filled: this role cannot change a flagged item.
                self._set_prompt(lambda: tr("Manual review: press Enter to send it to the supervisor queue "
                                            "(put it in tote {lane}); only a supervisor can change it",
                                            lane=res.record.lane), "review")
        else:
            self._set_prompt(lambda: tr("Decided: Enter to accept, F8 to override"), "ok")
        self._update_buttons()
        self.ctx.records_changed.emit()
        self.setFocus()

    def accept_item(self) -> None:
        if self.state != "decided" or self.result is None:
            return
        res, user, ctx = self.result, self.ctx.user, self.ctx
        rec = res.record
        if rec.decision.review and user is not None and user.can(Permission.APPROVE_FLAGGED):
            self.state = "inspecting"

            def work():
                return approve(ctx.station.store, user, rec.record_id, ctx.config.lanes)

            self.ctx.jobs.submit(work, lambda _: self._finish(rec.record_id, "approved"), self._decided_error)
        elif rec.decision.review:
            self._finish(rec.record_id, "to_review")
        else:
            self._finish(rec.record_id, "accepted")

    def open_override(self) -> None:
        if self.state != "decided" or self.result is None or self.override_dialog is not None:
            return
        d = self.result.record.decision
        if not self.may_override():
            # No form to fill in vain: the role is told before it types anything.
            self._set_prompt(lambda: tr("Only a supervisor can change an item flagged for review: press Enter to "
                                        "send it to the supervisor queue"), "bad")
            return
        dlg = OverrideDialog(d.grade.value, (d.proposed_disposition or d.disposition).value, self,
                             save=self._save_override, flagged=d.review)
        self.override_dialog = dlg
        dlg.finished.connect(self._override_closed)
        dlg.open()

    def _save_override(self, values, done, failed) -> None:
        """The dialog's Save: write on the worker; the dialog closes only once the record is written, so a
        refusal (a stale record, a full disk) leaves everything typed in it."""
        reason, comment, grade, disposition = values
        rec, user, ctx = self.result.record, self.ctx.user, self.ctx

        def work():
            return record_override(ctx.station.store, user, rec.record_id, reason, comment, grade, disposition,
                                   ctx.config.lane_for(disposition))

        def saved(_):
            done()
            self._finish(rec.record_id, "overridden", disposition)

        self.ctx.jobs.submit(work, saved, lambda exc: failed(str(exc)))

    def _override_closed(self, code: int) -> None:
        dlg, self.override_dialog = self.override_dialog, None
        if dlg is None:
            return
        dlg.deleteLater()
        self.setFocus()

    def _decided_error(self, exc: Exception) -> None:
        self.state = "decided"
        self.message.emit(str(exc))
        self._set_prompt(lambda e=str(exc): tr("Not saved: {error}", error=e), "bad")
        self._update_buttons()

    def _finish(self, record_id: str, how: str, disposition=None) -> None:
        rec = self.result.record
        lane = rec.lane if disposition is None else self.ctx.config.lane_for(disposition)
        disp = name("disposition", (disposition or rec.decision.disposition).value)
        texts = {"accepted": lambda: tr("Accepted: {disposition}, tote {lane}. Scan the next item",
                                        disposition=disp, lane=lane),
                 "approved": lambda: tr("Approved: {disposition}. Scan the next item", disposition=disp),
                 "overridden": lambda: tr("Override saved: {disposition}, tote {lane}. Scan the next item",
                                          disposition=disp, lane=lane),
                 "to_review": lambda: tr("Sent to the supervisor queue. Scan the next item")}
        self._reset()
        self._set_prompt(texts[how], "ok")
        if how != "accepted":
            self.ctx.records_changed.emit()
        self.item_finished.emit(record_id)

    def cancel_item(self) -> None:
        if self.state in ("idle", "inspecting"):
            return
        self._reset()
        self._set_prompt(lambda: tr("Item cancelled. Scan an RMA code and press Enter"))

    def _reset(self) -> None:
        self.state = "idle"
        self.live_tile.show()
        self.request = self.item = self.result = None
        self.frames, self.attempts, self._verdicts = {}, {}, {}
        self.scan.clear()
        self.scan.setFocus()
        self._update_buttons()

    # ----------------------------------------------------------------------------------------- rendering
    def _render_captions(self) -> None:
        verdicts = getattr(self, "_verdicts", {})
        annotated = getattr(self, "_annotated", {}) if self.result is not None else {}
        for view, tile in self.tiles.items():
            v = verdicts.get(view)
            if v is None:
                tile.set_caption(tr("Not captured yet") if self.request else "")
                continue
            lines = [tr("Quality: OK") if v.ok else tr("Quality: retake ({problems})",
                                                       problems="; ".join(_problem_words(p) for p in v.problems))]
            for n, (kind, score, _box) in enumerate(annotated.get(view, (None, []))[1], start=1):
                lines.append(f"{n}. {name('finding', kind)} {score:.2f}")
            tile.set_caption("\n".join(lines), "ok" if v.ok else "bad")
        if self.item is not None:
            flags = [tr(f) for f, on in (("hygiene", self.item.hygiene), ("safety", self.item.safety),
                                         ("liquid", self.item.liquid)) if on]
            earlier = getattr(self, "_earlier", 0)
            lines = [tr("Category: {category}", category=name("category", self.item.category))]
            if flags:
                lines.append(tr("Flags: {flags}", flags=", ".join(flags)))
            if earlier:
                lines.append(tr("Unit seen {n} time(s) before", n=earlier))
            self.reference.set_caption("\n".join(lines))

    def _render_decision(self) -> None:
        res = self.result
        review = bool(res is not None and res.record.decision.review)
        self.decision.setProperty("review", review)
        self.decision.style().unpolish(self.decision)
        self.decision.style().polish(self.decision)
        if res is None:
            for w in (self.grade, self.disposition, self.review_banner, self.liability, self.rules, self.measures):
                w.setText("")
            self.review_banner.setVisible(False)
            return
        d = res.record.decision
        self.grade.setText(d.grade.value)
        shown = d.proposed_disposition if (d.review and d.proposed_disposition) else d.disposition
        self.disposition.setText(tr("Disposition: {disposition} · tote {lane}",
                                    disposition=name("disposition", shown.value), lane=res.record.lane))
        self.review_banner.setVisible(review)
        self.review_banner.setText(tr("MANUAL REVIEW: a supervisor must approve") if review else "")
        de = res.comparison.delta_e00
        self.measures.setText(tr("Identity {identity:.2f} · ΔE00 {de} · confidence {conf:.2f}",
                                 identity=res.comparison.identity_score,
                                 de="-" if de is None else f"{de:.1f}", conf=d.confidence))
        self.liability.setText("\n".join(
            f"{name('party', s.party.value)} {s.share:.0%}: {rule_text(f'{s.rule}: {s.reason}')}"
            for s in d.liability))
        self.rules.setText("\n".join(f"• {rule_text(line)}" for line in d.reasons))


def _problem_words(problem: str) -> str:
    """Quality gate problems ("blurred (sharpness 3 < 8): ...") by their first word, translated."""
    head = problem.split(" ", 1)[0].rstrip(":")
    return tr({"blurred": "blurred", "under-exposed": "under-exposed", "over-exposed": "over-exposed",
               "glare": "glare"}.get(head, "poor capture"))
