"""Responsiveness benchmark: drive the bench through items back to back (scan, capture every view, accept)
while a 5 ms heartbeat timer measures how long the event loop is ever kept from running."""

from __future__ import annotations

import time

from PyQt6.QtCore import QTimer

from station.config import StationConfig
from station.users import Role, User
from ui.app import build_window, make_app
from ui.waiting import wait_until

HEARTBEAT_MS = 5


def run(config: StationConfig, items: int = 12) -> dict:
    app = make_app()
    win = build_window(config, "en")
    win.resize(1600, 1000)
    win.show()
    ctx, bench = win.ctx, win.bench
    wait_until(lambda: ctx.station is not None, 300, "the station to boot")
    ctx.set_user(User("bench-operator", Role.INSPECTOR))
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000 - HEARTBEAT_MS)
        last[0] = now

    done = [0]
    bench.item_finished.connect(lambda _rid: done.__setitem__(0, done[0] + 1))

    def drive() -> None:  # one step whenever the bench waits for the operator: "full speed"
        if bench.state == "idle" and done[0] < items:
            bench.next_simulated()
            bench.start_from_scan()
        elif bench.state == "capturing":
            bench.capture()
        elif bench.state == "decided":
            bench.accept_item()

    heartbeat = QTimer()
    heartbeat.setInterval(HEARTBEAT_MS)
    heartbeat.timeout.connect(beat)
    driver = QTimer()
    driver.setInterval(1)
    driver.timeout.connect(drive)
    t0 = time.perf_counter()
    last[0] = t0
    heartbeat.start()
    driver.start()
    wait_until(lambda: done[0] >= items, 60 + 30 * items, f"{items} items")
    seconds = time.perf_counter() - t0
    heartbeat.stop()
    driver.stop()
    win.close()
    app.processEvents()
    blocks = sorted(max(0.0, g) for g in gaps)
    p99 = blocks[min(len(blocks) - 1, int(0.99 * (len(blocks) - 1)))] if blocks else 0.0
    return {"items": items, "views_per_item": len(config.station.views), "seconds": round(seconds, 2),
            "items_per_minute": round(items / seconds * 60, 1), "heartbeat_ms": HEARTBEAT_MS,
            "ticks": len(gaps), "max_block_ms": round(blocks[-1] if blocks else 0.0, 1),
            "p99_block_ms": round(p99, 1), "blocks_over_50ms": sum(b > 50 for b in blocks),
            # the live view shares the worker with the bench: how many preview frames it grabbed meanwhile
            "live_grabs": bench.live.requested, "live_frames_shown": bench.live.shown}
