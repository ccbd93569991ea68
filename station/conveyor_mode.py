"""Conveyor mode: items arrive on the line, the camera is triggered at the photo-eye, the real pipeline decides,
and the divert is sent before the item reaches its gate.

Fail-safe: the end of the belt is the manual-review lane. When a decision would be late, the link is down,
two items are too close, or the rules are unsure, the item goes to the manual-review lane and the event is
logged. Items are tracked by the line's sequence number (never by arrival order), so a missed trigger costs
one item, not every later one. The record is written before the divert; when the line reports that an item
left by another lane than its record says (late divert, e-stop, watchdog, jam cleared by hand), an override
record is appended, so the records always say where every inspected item physically went.

Store writes all happen on the worker thread (SQLite connections belong to one thread).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hardware.conveyor import ConveyorError
from hardware.protocol import EStop, ItemEntered, ItemExited, Jam
from hardware.serial_conveyor import LinkState, SerialConveyor
from station.domain import Decision, Disposition, Frame, ReturnRequest, lane_for
# The tunnel scanner's labels are read by the one label module; the names conveyor callers know stay here.
from station.labels import ReturnLabelError as ReturnCodeError  # noqa: F401
from station.labels import format_rma2 as encode_return_code  # noqa: F401
from station.labels import parse_return_code  # noqa: F401

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------- tracking


@dataclass(slots=True)
class TrackedItem:
    seq: int
    code: str
    t_enter_ms: float
    gap_mm: int
    too_close: bool = False
    record_id: str | None = None
    order_id: str | None = None
    record_lane: int | None = None  # lane the latest record says
    decided_lane: int | None = None  # lane of the pipeline's decision (before any fail-safe)
    sent_lane: int | None = None
    review_reason: str | None = None
    divert_error: str | None = None
    exited_lane: int | None = None


@dataclass(frozen=True, slots=True)
class ConveyorModeSettings:
    time_scale: float = 1.0  # belt ms per wall ms (the simulator may run faster than real time)
    decision_budget_ms: float = 3400.0  # belt ms from the photo-eye to the nearest gate, minus nothing
    margin_ms: float = 300.0  # the divert must be on the line this long before the item reaches that gate
    route_cost_ms: float = 120.0  # wall ms that recording + sending the divert may take
    capture_window_ms: float = 1500.0  # belt ms after the photo-eye during which the item is under the camera
    min_gap_mm: int = 150


@dataclass(slots=True)
class ConveyorStats:
    entered: int = 0
    inspected: int = 0
    missed_triggers: int = 0
    not_inspected: int = 0
    diverts_sent: int = 0
    divert_failures: int = 0
    forced_review: dict[str, int] = field(default_factory=dict)
    exited: int = 0
    exited_manual: int = 0
    overrides: int = 0
    link_downs: int = 0
    estops: int = 0
    jams: int = 0


class _Router:
    """Replaces the pipeline's LaneRouter in conveyor mode: routing checks the item's deadline and the link."""

    def __init__(self, mode: "ConveyorMode") -> None:
        self.mode = mode

    def lane_for(self, decision: Decision) -> int:
        m = self.mode
        item = m.current
        lane = lane_for(m.lanes, decision.disposition)
        if item is None:
            return lane
        item.decided_lane = lane
        reason = m.review_reason(item)
        if reason is not None and lane != m.manual_lane:
            item.review_reason = reason
            return m.manual_lane
        return lane

    def send(self, item_seq: int, lane: int) -> None:
        self.mode.send_divert(item_seq, lane)


class ConveyorMode:
    def __init__(self, station, conveyor: SerialConveyor, identify: Callable[[str], ReturnRequest],
                 settings: ConveyorModeSettings = ConveyorModeSettings(),
                 stage: Callable[[str], None] | None = None, event_log: Path | None = None,
                 operator: str = "conveyor") -> None:
        self.station = station
        self.conveyor = conveyor
        self.identify = identify
        self.stage = stage
        self.settings = settings
        self.operator = operator
        self.lanes = dict(station.config.lanes)
        self.manual_lane = station.config.lane_for(Disposition.MANUAL_REVIEW)
        self.event_log = event_log
        self.stats = ConveyorStats()
        self.items: dict[int, TrackedItem] = {}
        self.first_lanes: dict[int, int] = {}  # item seq -> lane of its first record (what the station decided)
        self.current: TrackedItem | None = None
        self._last_seq = 0
        self._work: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._log_lock = threading.Lock()
        self._log_fh = None

    # ---------------------------------------------------------------------------------------- lifecycle

    def start(self) -> "ConveyorMode":
        if self.event_log is not None:
            self.event_log.parent.mkdir(parents=True, exist_ok=True)
            self._log_fh = open(self.event_log, "a", encoding="utf-8")
        self.station.pipeline.router = _Router(self)
        self._warm_up()
        for target, name in ((self._dispatch, "conveyor-dispatch"), (self._worker, "conveyor-worker")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _warm_up(self) -> None:
        """First inference is slow (graph optimisation): do it before the belt brings the first item."""
        import numpy as np

        cam = self.station.config.camera
        size = (getattr(cam, "height", None) or 480, getattr(cam, "width", None) or 640, 3)
        self.station.pipeline.detector.detect([np.full(size, 200, np.uint8)])

    def start_line(self) -> None:
        """Start the belt once the station is ready (the line may already be running: that is fine)."""
        try:
            self.conveyor.start_belt()
            self.log_event("belt_started")
        except ConveyorError as exc:
            self.log_event("belt_start_failed", error=str(exc))

    def stop(self) -> None:
        self._stop.set()
        self._work.put(None)
        for t in self._threads:
            t.join(timeout=10)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def busy(self) -> bool:
        return self._work.unfinished_tasks > 0

    def log_event(self, kind: str, **data) -> None:
        entry = {"at": time.time(), "event": kind, **data}
        log.info("conveyor %s %s", kind, data)
        with self._log_lock:
            if self._log_fh is not None:
                self._log_fh.write(json.dumps(entry) + "\n")
                self._log_fh.flush()

    # ---------------------------------------------------------------------------------------- decisions

    def belt_now(self) -> float | None:
        return self.conveyor.belt_clock_ms(self.settings.time_scale)

    def review_reason(self, item: TrackedItem) -> str | None:
        """Why this item must go to manual review regardless of its decision, or None."""
        if not self.conveyor.alive():
            return "link_down"
        if item.too_close:
            return "too_close"
        now = self.belt_now()
        if now is None:
            return "no_heartbeat"
        s = self.settings
        remaining = item.t_enter_ms + s.decision_budget_ms - now - s.route_cost_ms * s.time_scale
        if remaining < s.margin_ms:
            return "late"
        return None

    def send_divert(self, item_seq: int, lane: int) -> None:
        item = self.items.get(item_seq)
        try:
            self.conveyor.divert(item_seq, lane)
            self.stats.diverts_sent += 1
            if item is not None:
                item.sent_lane = lane
        except ConveyorError as exc:
            self.stats.divert_failures += 1
            if item is not None:
                item.divert_error = str(exc)
            self.log_event("divert_failed", item=item_seq, lane=lane, error=str(exc))

    # ---------------------------------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self.conveyor.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(ev, ItemEntered):
                self._entered(ev)
            elif isinstance(ev, ItemExited):
                self._work.put(("exited", ev))
            elif isinstance(ev, EStop):
                self.stats.estops += ev.active
                self.log_event("estop", active=ev.active, t_ms=ev.t_ms)
                if not ev.active:
                    self._restart_line()
            elif isinstance(ev, Jam):
                self.stats.jams += ev.active
                self.log_event("jam", active=ev.active, t_ms=ev.t_ms)
            elif isinstance(ev, LinkState):
                self.stats.link_downs += not ev.up
                self.log_event("link_up" if ev.up else "link_down")

    def _restart_line(self) -> None:
        try:
            self.conveyor.reset()
            self.conveyor.start_belt()
        except ConveyorError as exc:
            self.log_event("restart_failed", error=str(exc))

    def _entered(self, ev: ItemEntered) -> None:
        self.stats.entered += 1
        if ev.item_seq in self.items:
            return
        if self._last_seq and ev.item_seq > self._last_seq + 1:
            # count by arithmetic, list at most 50: a corrupt item_seq (a jump to 2**32-16) built a 4-billion list
            count = ev.item_seq - self._last_seq - 1
            self.stats.missed_triggers += count
            self.log_event("missed_trigger", items=list(range(self._last_seq + 1, self._last_seq + 1 + min(count, 50))),
                           count=count)
        self._last_seq = max(self._last_seq, ev.item_seq)
        item = TrackedItem(ev.item_seq, ev.code, ev.t_ms, ev.gap_mm)
        if ev.gap_mm < self.settings.min_gap_mm:
            item.too_close = True
            prev = self.items.get(ev.item_seq - 1)
            if prev is not None:
                prev.too_close = True
            self.log_event("too_close", item=ev.item_seq, gap_mm=ev.gap_mm)
        self.items[ev.item_seq] = item
        self._work.put(("inspect", item))

    # ---------------------------------------------------------------------------------------- worker

    def _worker(self) -> None:
        while True:
            job = self._work.get()
            try:
                if job is None:
                    return
                kind, payload = job
                if kind == "inspect":
                    self._inspect(payload)
                else:
                    self._exited(payload)
            except Exception as exc:  # noqa: BLE001 - one bad item must not stop the line
                log.exception("conveyor worker failed on %r", job)
                self.log_event("worker_error", error=str(exc))
            finally:
                self._work.task_done()

    def _override(self, item: TrackedItem, lane: int, reason: str) -> None:
        if item.record_id is None or item.record_lane == lane:
            return
        disposition = Disposition.MANUAL_REVIEW if lane == self.manual_lane else None
        item.record_id = self.station.store.override(item.record_id, self.operator, reason,
                                                     disposition=disposition, lane=lane)
        item.record_lane = lane
        self.stats.overrides += 1
        self.log_event("record_override", item=item.seq, order=item.order_id, lane=lane, reason=reason)

    def _not_inspected(self, item: TrackedItem, why: str) -> None:
        self.stats.not_inspected += 1
        self.log_event("not_inspected", item=item.seq, code=item.code[:80], why=why)
        if self.conveyor.alive():
            self.send_divert(item.seq, self.manual_lane)

    def _inspect(self, item: TrackedItem) -> None:
        st = self.station
        if item.too_close and item.seq - 1 in self.items:
            prev = self.items[item.seq - 1]  # already routed: take it back to the manual lane as well
            if prev.sent_lane not in (None, self.manual_lane) and prev.exited_lane is None:
                self.send_divert(prev.seq, self.manual_lane)
                if prev.divert_error is None:
                    self._override(prev, self.manual_lane, "too close to the next item to divert safely")
        now = self.belt_now()
        if now is not None and now - item.t_enter_ms > self.settings.capture_window_ms:
            self._not_inspected(item, f"trigger arrived {now - item.t_enter_ms:.0f} belt ms late: item left the camera")
            return
        try:
            request = self.identify(item.code)
        except Exception as exc:  # noqa: BLE001 - an unreadable label is an operator matter, not a crash
            self._not_inspected(item, f"label not identified: {exc}")
            return
        if self.stage is not None:
            self.stage(item.code)
        frames: list[Frame] = [st.camera.capture(v) for v in st.config.station.views]
        self.current = item
        try:
            result = st.pipeline.inspect(request, frames, operator=self.operator, item_seq=item.seq)
        except Exception as exc:  # noqa: BLE001
            self._not_inspected(item, f"inspection failed: {exc}")
            return
        finally:
            self.current = None
        self.stats.inspected += 1
        item.record_id = result.record.record_id
        item.order_id = request.order_id
        item.record_lane = result.record.lane
        self.first_lanes[item.seq] = result.record.lane
        if item.review_reason is not None:
            self.stats.forced_review[item.review_reason] = self.stats.forced_review.get(item.review_reason, 0) + 1
            self.log_event("manual_review", item=item.seq, order=request.order_id, why=item.review_reason,
                           decided_lane=item.decided_lane)
        if item.divert_error is not None and item.record_lane != self.manual_lane:
            self._override(item, self.manual_lane, f"divert not carried out ({item.divert_error}); "
                           "the item goes on to the manual-review lane")
        if item.exited_lane is not None and item.exited_lane != item.record_lane:
            self._override(item, item.exited_lane, f"the line reports the item left at lane {item.exited_lane}")

    def _exited(self, ev: ItemExited) -> None:
        self.stats.exited += 1
        if ev.lane == self.manual_lane:
            self.stats.exited_manual += 1
        item = self.items.get(ev.item_seq)
        if item is None:
            self.log_event("exited_untracked", item=ev.item_seq, lane=ev.lane, by_hand=ev.by_hand)
            return
        item.exited_lane = ev.lane
        if item.record_id is not None and ev.lane != item.record_lane:
            how = "taken off by hand (jam)" if ev.by_hand else "pushed/let through by the line"
            self._override(item, ev.lane, f"the line reports the item left at lane {ev.lane} ({how})")
        self.items.pop(ev.item_seq - 5000, None)  # keep the table small on a long run
