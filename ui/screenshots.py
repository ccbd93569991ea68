"""Screenshots of the bench, the review queue and the dashboard in English and Chinese, from a real window.

    xvfb-run -a -s "-screen 0 1920x1200x24" env QT_QPA_PLATFORM=xcb station gui --screenshots docs/screenshots

Uses a fresh temporary data dir filled with simulated returns, so the pictures do not depend on (or touch)
the station's own records.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PyQt6.QtGui import QGuiApplication
from PyQt6.QtWidgets import QApplication

from station.config import StationConfig
from station.domain import Frame
from ui.app import build_window
from ui.waiting import wait_until

SEED_ITEMS = 24
BENCH_STORY = 21  # "kettle box crushed, kettle dented": detections and liability on screen


def _seed(ctx, n: int) -> None:
    """Run simulated returns through the pipeline (on the worker); two with an under-exposed view get flagged."""
    sims = [ctx.next_simulated() for _ in range(n)]

    def work():
        st = ctx.station
        for i, sim in enumerate(sims):
            st.camera.stage(sim.staged)
            frames = [st.camera.capture(v) for v in ctx.config.station.views]
            if i in (4, 9):
                frames[0] = Frame(np.zeros_like(frames[0].image), frames[0].view)
            st.pipeline.inspect(sim.request, frames, operator="inspector")

    box = {}
    ctx.jobs.submit(work, lambda _: box.setdefault("ok", True), lambda e: box.setdefault("error", e))
    wait_until(lambda: box, 600, "seeding simulated returns")
    if "error" in box:
        raise box["error"]


def dashboard_ready(dashboard) -> bool:
    """The dashboard shows its numbers and the drift watch has its report (it loads only while shown, so a
    grab taken on the numbers alone caught the drift panel at "Loading...")."""
    return dashboard.stats is not None and dashboard.stats.total_items > 1 and dashboard.drift is not None


def _settle(ms: int = 300) -> None:
    """Let layout requests run their course (a caption that grew a line re-lays its tile, then the row)."""
    import time

    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def _grab(win, path: Path) -> None:
    _settle()
    if QGuiApplication.platformName() == "xcb":  # a real X window: what the X server shows
        pix = win.screen().grabWindow(win.winId())
    else:
        pix = win.grab()
    if not pix.save(str(path)):
        raise OSError(f"cannot write {path}")


def take_screenshots(app: QApplication, config: StationConfig, out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.model_copy(update={"station": config.station.model_copy(update={"data_dir": Path(tmp)})})
        win = build_window(cfg, "en")
        win.resize(1680, 1050)
        win.show()
        ctx = win.ctx
        wait_until(lambda: ctx.station is not None, 300, "the station to boot")
        _grab(win, out_dir / "login_en.png")
        _seed(ctx, SEED_ITEMS)
        box = {}
        ctx.jobs.submit(lambda: ctx.users.authenticate("supervisor", "2222"), lambda u: box.setdefault("u", u))
        wait_until(lambda: box, 60, "login")
        ctx.set_user(box["u"])
        ctx._next_sim = BENCH_STORY
        bench = win.bench
        bench.next_simulated()
        bench.start_from_scan()
        while bench.state != "decided":
            wait_until(lambda: bench.state in ("capturing", "decided"), 120, "the bench")
            if bench.state == "capturing":
                bench.capture()
                wait_until(lambda: bench.state != "busy", 120, "a capture")
        for lang in ("en", "zh_CN"):
            win.set_language(lang)
            win.tabs.setCurrentWidget(bench)
            _grab(win, out_dir / f"bench_{lang}.png")
            win.tabs.setCurrentWidget(win.queue)
            wait_until(lambda: win.queue.items and not win.queue._loading, 120, "the review queue")
            win.queue.table.selectRow(0)
            wait_until(lambda: win.queue.evidence is not None, 120, "the evidence")
            win.queue.heat_toggle.setChecked(True)  # what differs from the catalogue, drawn on the views
            wait_until(lambda: win.queue.heat is not None, 120, "the heat maps")
            _grab(win, out_dir / f"queue_{lang}.png")
            win.tabs.setCurrentWidget(win.dashboard)
            wait_until(lambda: dashboard_ready(win.dashboard), 120, "the dashboard and its drift watch")
            _grab(win, out_dir / f"dashboard_{lang}.png")
        win.close()
        app.processEvents()
    print(f"screenshots written to {out_dir}")
    return 0
