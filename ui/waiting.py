"""Wait for a condition while the Qt event loop keeps running (scripts: benchmark, screenshots)."""

from __future__ import annotations

import time
from typing import Callable

from PyQt6.QtCore import QEventLoop
from PyQt6.QtWidgets import QApplication


def wait_until(cond: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    app = QApplication.instance()
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.002)
