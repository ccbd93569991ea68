"""The bench's live camera view: preview frames grabbed on the station worker (never on the UI thread) about
nine times a second, each with the quality gate's verdict.

At most one grab is ever in flight: a tick that finds the last grab still running is skipped, so frames are
dropped, never queued, and a slow camera lowers the frame rate instead of piling work in front of a capture.
The owner says through ``wanted()`` when a picture is wanted (page shown, window not minimised, no capture or
inspection using the camera); ticks and late frames outside those times do nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

from PyQt6.QtCore import QObject, QSize, QTimer, pyqtSignal
from PyQt6.QtGui import QImage, QResizeEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

from ui.context import StationContext
from ui.images import thumbnail, to_qimage
from ui.widgets import ImageTile
from vision.camera import can_preview
from vision.quality import QualityVerdict

PREVIEW_MS = 110  # ~9 fps: smooth enough to position an item, a small share of one core
RETRY_MS = 2000  # after a failed grab or a camera without preview: do not hammer an unplugged device
PREVIEW_SIDE = 640  # px: the live tile at its largest (smaller frames are shown as they are)


class NoPicture(StrEnum):
    UNSUPPORTED = "unsupported"  # the camera has no live view (folder replay, a test double)
    NOTHING_NEW = "nothing_new"  # e.g. a triggered frame waits for its capture


@dataclass(frozen=True, slots=True)
class LivePicture:
    image: QImage
    verdict: QualityVerdict
    grab_ms: float  # worker time for grab + gate + conversion (the cost the live view adds per frame)


class LiveTile(ImageTile):
    """An ImageTile whose picture grows with the space it gets (from 224x168 up to 640x480), so the live view
    does not raise the bench's minimum height: the window still fits a 1600x1000 screen."""

    MIN, MAX = QSize(224, 168), QSize(640, 480)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(self.MIN.width(), self.MIN.height(), parent)
        self.image.setMinimumSize(self.MIN)
        self.image.setMaximumSize(self.MAX)
        self.image.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.caption.setMinimumWidth(self.MIN.width())
        self.caption.setMaximumWidth(self.MAX.width())
        self._last: QImage | None = None

    def set_image(self, image: QImage | None) -> None:
        self._last = image
        super().set_image(image)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._last is not None:
            super().set_image(self._last)  # rescale to the new size


class LiveView(QObject):
    picture = pyqtSignal(object)  # LivePicture, only while still wanted
    active_changed = pyqtSignal(bool)  # the view started or paused
    failed = pyqtSignal(str)  # a grab failed (message), or "" when the camera has no live view
    grab_requested = pyqtSignal()  # a grab was handed to the worker (tests and diagnostics count these)

    def __init__(self, ctx: StationContext, wanted: Callable[[], tuple[bool, str | None]],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._wanted = wanted  # () -> (active, view to preview)
        self.timer = QTimer(self)
        self.timer.setInterval(PREVIEW_MS)
        self.timer.timeout.connect(self.tick)
        self.active = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.requested = 0
        self.shown = 0
        self._retry_at = 0.0

    def start(self) -> None:
        if not self.timer.isActive():
            self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self._set_active(False)

    def _set_active(self, active: bool) -> None:
        if active != self.active:
            self.active = active
            self.active_changed.emit(active)

    def tick(self) -> None:
        active, view = self._wanted() if self.ctx.station is not None else (False, None)
        self._set_active(active)
        if not active or self.in_flight or time.monotonic() < self._retry_at:
            return
        ctx = self.ctx

        def work() -> LivePicture | NoPicture:
            t0 = time.perf_counter()
            st = ctx.station
            if not can_preview(st.camera):
                return NoPicture.UNSUPPORTED
            frame = st.camera.preview(view)
            if frame is None:
                return NoPicture.NOTHING_NEW
            verdict = st.pipeline.quality_gate.check(frame.image)
            image = to_qimage(thumbnail(frame.image, PREVIEW_SIDE))
            return LivePicture(image, verdict, (time.perf_counter() - t0) * 1000)

        self.in_flight += 1
        token = ctx.jobs.submit(work, self._done, self._error, quiet=True)
        if token < 0:  # the window is closing
            self.in_flight -= 1
            return
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.requested += 1
        self.grab_requested.emit()

    def _done(self, result: LivePicture | NoPicture) -> None:
        self.in_flight -= 1
        if result is NoPicture.UNSUPPORTED:
            self._retry_at = time.monotonic() + RETRY_MS / 1000  # the camera may be swapped: ask again later
            if self._still_wanted():
                self.failed.emit("")
            return
        if result is NoPicture.NOTHING_NEW:
            return
        if self._still_wanted():
            self.shown += 1
            self.picture.emit(result)

    def _error(self, exc: Exception) -> None:
        self.in_flight -= 1
        self._retry_at = time.monotonic() + RETRY_MS / 1000
        if self._still_wanted():
            self.failed.emit(str(exc))

    def _still_wanted(self) -> bool:
        # A frame grabbed just before a capture started arrives after it: it must not cover the capture.
        return self.timer.isActive() and self.ctx.station is not None and self._wanted()[0]
