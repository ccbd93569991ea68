"""One worker thread that runs every piece of station work (booting, capture, inspection, database reads and
writes) off the UI thread. Jobs run one at a time in submission order, so the station's SQLite connection
and camera are only ever used by that thread; results come back to the UI thread through queued signals.
"""

from __future__ import annotations

import itertools
import traceback
from typing import Any, Callable

from PyQt6.QtCore import QObject, QThread, pyqtSignal, pyqtSlot


class _Worker(QObject):
    done = pyqtSignal(int, object)
    failed = pyqtSignal(int, object, str)

    @pyqtSlot(int, object)
    def run(self, token: int, fn: Callable[[], Any]) -> None:
        try:
            result = fn()
        except Exception as exc:  # reported to the UI, never swallowed
            self.failed.emit(token, exc, traceback.format_exc())
        else:
            self.done.emit(token, result)


class Jobs(QObject):
    """``submit(fn, on_done, on_error)``: ``fn`` runs on the worker thread, callbacks on the UI thread."""

    _request = pyqtSignal(int, object)
    busy_changed = pyqtSignal(bool)
    error = pyqtSignal(object)  # errors without their own handler
    progress = pyqtSignal(str, int, int)  # (what, done, total) from long work; delivered on the UI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self._callbacks: dict[int, tuple[Callable | None, Callable | None]] = {}
        self._quiet: set[int] = set()  # pending tokens that do not count as "busy" (the live view's grabs)
        self._tokens = itertools.count(1)
        self._stopped = False

    def start(self) -> "Jobs":
        if self._thread is not None:
            return self
        self._stopped = False
        self._thread = QThread()
        self._thread.setObjectName("station-worker")
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._request.connect(self._worker.run)
        self._worker.done.connect(self._on_done)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()
        return self

    def stop(self, timeout_ms: int = 30000) -> None:
        if self._thread is None:
            return
        self._thread.quit()
        self._thread.wait(timeout_ms)
        self._thread = None
        self._worker = None
        self._stopped = True

    def reporter(self, what: str) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callable for work running on the worker: each call emits ``progress``,
        which Qt queues to the UI thread (the receiver lives there)."""
        return lambda done, total: self.progress.emit(what, int(done), int(total))

    def pending(self) -> int:
        return len(self._callbacks)

    def _busy(self) -> bool:
        return len(self._callbacks) > len(self._quiet)

    def submit(self, fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[Exception], None] | None = None, quiet: bool = False) -> int:
        """``quiet``: routine background work (a live-view frame) that must not flash the busy indicator."""
        if self._thread is None:
            if self._stopped:
                # The window is closing: a timer or a queued signal that fires after shutdown is dropped,
                # not an error (the station it would use is already closed).
                return -1
            raise RuntimeError("Jobs.start() first")
        token = next(self._tokens)
        was_busy = self._busy()
        self._callbacks[token] = (on_done, on_error)
        if quiet:
            self._quiet.add(token)
        elif not was_busy:
            self.busy_changed.emit(True)
        self._request.emit(token, fn)
        return token

    def _finish(self, token: int) -> tuple[Callable | None, Callable | None]:
        was_busy = self._busy()
        cbs = self._callbacks.pop(token, (None, None))
        self._quiet.discard(token)
        if was_busy and not self._busy():
            self.busy_changed.emit(False)
        return cbs

    @pyqtSlot(int, object)
    def _on_done(self, token: int, result: object) -> None:
        on_done, _ = self._finish(token)
        if on_done is not None:
            on_done(result)

    @pyqtSlot(int, object, str)
    def _on_failed(self, token: int, exc: object, tb: str) -> None:
        _, on_error = self._finish(token)
        if on_error is not None:
            on_error(exc)
        else:
            self.error.emit(exc)
