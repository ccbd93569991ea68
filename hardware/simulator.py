"""A conveyor simulator that speaks the station protocol's bytes on a pty, with belt physics in scaled time.

The belt: items are put on at ``pitch_mm`` (nose to nose), pass the inspection photo-eye (ITEM_ENTERED, with
the code the tunnel scanner read), then divert gates (one per lane, in belt order); a gate fires for an item
whose divert is armed for its lane, and anything not diverted leaves at the end of the belt (``end_lane``,
which must be the manual-review lane: the fail-safe). A gate push also takes any item closer than
``min_gap_mm`` to the pushed one (the hazard of two items too close).

Safety model (as a PLC does it): an e-stop or a lost station heartbeat (watchdog) clears every armed divert,
so items in flight go to the end lane. Every item's real outcome is kept in ``ledger`` (ground truth).

Faults on command (``inject`` or a SIM_FAULT frame): dropped bytes, corrupted bytes, unplug/replug of the
port, a jam, an e-stop, a late item (its photo-eye report is held back), two items too close.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hardware.protocol import (
    AckStatus,
    Belt,
    BeltCommand,
    Divert,
    EStop,
    Heartbeat,
    ItemAtGate,
    ItemEntered,
    ItemExited,
    Jam,
    Message,
    Reset,
    SimFault,
    SimFaultCommand,
)
from hardware.serial_link import FdTransport, LinkDown, LinkError, SerialLink

log = logging.getLogger(__name__)


def _default_gates() -> dict[int, int]:
    return {lane: 2400 + 400 * (lane - 1) for lane in range(1, 7)}


@dataclass(frozen=True, slots=True)
class LineGeometry:
    belt_length_mm: int = 5200
    speed_mm_s: int = 500
    pitch_mm: int = 700
    item_length_mm: int = 300
    min_gap_mm: int = 150
    eye_mm: int = 300
    gates_mm: dict[int, int] = field(default_factory=_default_gates)  # lane -> gate position
    end_lane: int = 0

    def lanes(self) -> int:
        return max([self.end_lane, *self.gates_mm]) + 1


@dataclass(slots=True)
class SimItem:
    seq: int
    code: str
    pos_mm: float  # leading edge
    length_mm: int
    gap_mm: int
    armed_lane: int | None = None
    armed_margin_ms: float | None = None
    seen_by_eye: bool = False
    late_ms: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where an item really went (ground truth for the bench)."""

    seq: int
    code: str
    lane: int
    by_hand: bool
    armed_lane: int | None
    margin_ms: float | None  # belt ms between the divert being armed and the item reaching its gate
    collateral: bool = False


FAULT_NAMES = {f: f.name.lower() for f in SimFault}


class ConveyorSimulator:
    """Call ``start()`` to create the pty and run; ``port_path`` is a stable symlink to the current pty
    slave (like a udev /dev/serial/by-id link), so an unplug/replug keeps the same name."""

    def __init__(self, port_path: Path, items: Callable[[], str | None], geometry: LineGeometry = LineGeometry(),
                 time_scale: float = 1.0, watchdog_s: float = 1.0, seed: int = 0, autostart: bool = True) -> None:
        self.port_path = Path(port_path)
        self.items = items
        self.geo = geometry
        self.time_scale = time_scale
        self.watchdog_s = watchdog_s
        self.autostart = autostart
        self.rng = random.Random(seed)
        self.ledger: list[Outcome] = []
        self.faults_injected: dict[str, int] = {}
        self.t_ms = 0.0
        self.running = False
        self.estop = False
        self.jammed = False
        self.speed_mm_s = geometry.speed_mm_s
        self.on_belt: list[SimItem] = []
        self._lock = threading.RLock()
        self._next_seq = 1
        self._since_spawn_mm = float(geometry.pitch_mm)
        self._close_next = False
        self._late_next_ms = 0
        self._drop_frames = 0
        self._corrupt_frames = 0
        self._unplugged_until: float | None = None
        self._estop_until = 0.0
        self._jam_until = 0.0
        self._watchdog_tripped = False
        self._outbox: deque[tuple[float, Message]] = deque()
        self._pty: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.link: SerialLink | None = None
        self.exhausted = False

    # ---------------------------------------------------------------------------------------- pty / link

    def _new_pty(self) -> FdTransport:
        if self._unplugged_until is not None:
            raise LinkError("unplugged")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes are bytes
        self._pty = (master, slave)
        tmp = self.port_path.with_name(self.port_path.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.port_path)
        return FdTransport(master, f"simulator pty {os.ttyname(slave)}")

    def _close_pty(self) -> None:
        # Only the slave side is ours: the master belongs to the FdTransport the link closes. Closing it
        # here too could close an unrelated file that reused the descriptor number in between.
        pty, self._pty = self._pty, None
        if pty is not None:
            try:
                os.close(pty[1])
            except OSError:
                pass

    def _outgoing(self, data: bytes) -> bytes:
        with self._lock:
            if self._drop_frames > 0:
                self._drop_frames -= 1
                cut = self.rng.randrange(1, len(data))
                return data[:cut]  # the rest of the frame never arrives
            if self._corrupt_frames > 0:
                self._corrupt_frames -= 1
                i = self.rng.randrange(len(data))
                return data[:i] + bytes((data[i] ^ (1 << self.rng.randrange(8)),)) + data[i + 1:]
        return data

    def start(self) -> "ConveyorSimulator":
        self.port_path.parent.mkdir(parents=True, exist_ok=True)
        self.link = SerialLink(self._new_pty, self._handle, name="simulator", outgoing_filter=self._outgoing)
        self.link.start()
        self.link.wait_connected(2)
        self.running = self.autostart
        for target, name in ((self._physics, "sim-physics"), (self._sender, "sim-sender")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        if self.link is not None:
            self.link.close()
        self._close_pty()
        self.port_path.unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------------- commands

    def _handle(self, msg: Message) -> AckStatus:
        with self._lock:
            self._watchdog_tripped = False
            if isinstance(msg, Heartbeat):
                return AckStatus.OK
            if isinstance(msg, Divert):
                return self._divert(msg.item_seq, msg.lane)
            if isinstance(msg, Belt):
                if msg.command is BeltCommand.START:
                    if self.estop or self.jammed:
                        return AckStatus.REFUSED
                    self.running = True
                elif msg.command is BeltCommand.STOP:
                    self.running = False
                else:
                    if not 50 <= msg.speed_mm_s <= 3000:
                        return AckStatus.REFUSED
                    self.speed_mm_s = msg.speed_mm_s
                return AckStatus.OK
            if isinstance(msg, Reset):
                return AckStatus.REFUSED if (self.estop or self.jammed) else AckStatus.OK
            if isinstance(msg, SimFaultCommand):
                self.inject(msg.fault, msg.arg)
                return AckStatus.OK
        return AckStatus.UNSUPPORTED

    def _divert(self, item_seq: int, lane: int) -> AckStatus:
        if lane != self.geo.end_lane and lane not in self.geo.gates_mm:
            return AckStatus.BAD_LANE
        item = next((i for i in self.on_belt if i.seq == item_seq), None)
        if item is None:
            return AckStatus.TOO_LATE if item_seq < self._next_seq else AckStatus.UNKNOWN_ITEM
        target = self.geo.belt_length_mm if lane == self.geo.end_lane else self.geo.gates_mm[lane]
        centre = item.pos_mm - item.length_mm / 2
        if centre >= target:
            return AckStatus.TOO_LATE
        item.armed_lane = lane
        item.armed_margin_ms = (target - centre) / self.speed_mm_s * 1000
        return AckStatus.OK

    def inject(self, fault: SimFault, arg: int = 0) -> None:
        """Inject a fault now; ``arg`` is a frame count for byte faults, belt milliseconds for durations."""
        with self._lock:
            name = FAULT_NAMES[fault]
            self.faults_injected[name] = self.faults_injected.get(name, 0) + 1
            now = time.monotonic()
            if fault is SimFault.DROP_BYTES:
                self._drop_frames += max(1, arg)
            elif fault is SimFault.CORRUPT_BYTES:
                self._corrupt_frames += max(1, arg)
            elif fault is SimFault.UNPLUG:
                self._unplugged_until = now + (arg or 2000) / 1000 / self.time_scale
            elif fault is SimFault.JAM:
                self.jammed = True
                self._jam_until = self.t_ms + (arg or 5000)
                self._emit(Jam(True, int(self.t_ms)))
                if self.on_belt:  # the operator clears the jam by taking the front item off by hand
                    front = max(self.on_belt, key=lambda i: i.pos_mm)
                    self._exit(front, self.geo.end_lane, by_hand=True)
            elif fault is SimFault.ESTOP:
                self.estop = True
                self._estop_until = self.t_ms + (arg or 3000)
                self._emit(EStop(True, int(self.t_ms)))
                for i in self.on_belt:  # safety PLC drops its tracking: everything in flight goes to the end
                    i.armed_lane = None
            elif fault is SimFault.LATE_ITEM:
                self._late_next_ms = arg or 2500
            elif fault is SimFault.ITEMS_TOO_CLOSE:
                self._close_next = True
        if fault is SimFault.UNPLUG and self.link is not None:
            self.link.disconnect("simulated unplug")
            self._close_pty()

    # ---------------------------------------------------------------------------------------- physics

    def _emit(self, msg: Message, delay_ms: float = 0.0) -> None:
        self._outbox.append((self.t_ms + delay_ms, msg))
        if len(self._outbox) > 2000:
            self._outbox.popleft()

    def _exit(self, item: SimItem, lane: int, by_hand: bool = False, collateral: bool = False) -> None:
        self.on_belt.remove(item)
        margin = item.armed_margin_ms if item.armed_lane == lane else None
        self.ledger.append(Outcome(item.seq, item.code, lane, by_hand, item.armed_lane, margin, collateral))
        self._emit(ItemExited(item.seq, lane, int(self.t_ms), by_hand))

    def _physics(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(0.004)
            now = time.monotonic()
            dt_ms = (now - last) * 1000 * self.time_scale
            last = now
            with self._lock:
                self.t_ms += dt_ms
                self._timers(now)
                if self.running and not self.estop and not self.jammed:
                    self._advance(self.speed_mm_s * dt_ms / 1000)

    def _timers(self, now: float) -> None:
        if self._unplugged_until is not None and now >= self._unplugged_until:
            self._unplugged_until = None  # plugged back: the link's reader opens a new pty
        if self.estop and self.t_ms >= self._estop_until:
            self.estop = False
            self._emit(EStop(False, int(self.t_ms)))
        if self.jammed and self.t_ms >= self._jam_until:
            self.jammed = False
            self._emit(Jam(False, int(self.t_ms)))
        link = self.link
        if link is not None and not self._watchdog_tripped and now - link.last_rx > self.watchdog_s:
            self._watchdog_tripped = True
            cleared = [i.seq for i in self.on_belt if i.armed_lane is not None]
            for i in self.on_belt:
                i.armed_lane = None
            log.warning("simulator: station silent for %.1f s, cleared armed diverts %s", self.watchdog_s, cleared)

    def _advance(self, d_mm: float) -> None:
        geo = self.geo
        for item in sorted(self.on_belt, key=lambda i: -i.pos_mm):
            if item not in self.on_belt:
                continue
            before = item.pos_mm - item.length_mm / 2
            item.pos_mm += d_mm
            centre = item.pos_mm - item.length_mm / 2
            if not item.seen_by_eye and item.pos_mm >= geo.eye_mm:
                item.seen_by_eye = True
                self._emit(ItemEntered(item.seq, int(self.t_ms), item.gap_mm, item.code), item.late_ms)
            lane = item.armed_lane
            if lane is not None and lane in geo.gates_mm and before < geo.gates_mm[lane] <= centre:
                self._emit(ItemAtGate(item.seq, lane, int(self.t_ms)))
                gate = geo.gates_mm[lane]
                self._exit(item, lane)
                for other in list(self.on_belt):  # the pusher is wider than the gap: it takes neighbours too
                    oc = other.pos_mm - other.length_mm / 2
                    if abs(oc - gate) < (item.length_mm + other.length_mm) / 2 + geo.min_gap_mm:
                        self._exit(other, lane, collateral=True)
                continue
            if item.pos_mm >= geo.belt_length_mm:
                self._exit(item, geo.end_lane)
        self._since_spawn_mm += d_mm
        spacing = geo.item_length_mm + geo.min_gap_mm // 3 if self._close_next else geo.pitch_mm
        if self._since_spawn_mm >= spacing and not self.exhausted:
            code = self.items()
            if code is None:
                self.exhausted = True
                return
            gap = int(self._since_spawn_mm - geo.item_length_mm)
            item = SimItem(self._next_seq, code, 0.0, geo.item_length_mm, max(0, gap), late_ms=self._late_next_ms)
            self._next_seq += 1
            self._late_next_ms = 0
            self._close_next = False
            self._since_spawn_mm = 0.0
            self.on_belt.append(item)

    # ---------------------------------------------------------------------------------------- events out

    def _sender(self) -> None:
        last_hb = 0.0
        while not self._stop.is_set():
            link = self.link
            with self._lock:
                head = self._outbox[0] if self._outbox and self._outbox[0][0] <= self.t_ms else None
                if head is None:
                    # a held-back (late) report must not block the ones behind it
                    for k, (due, m) in enumerate(self._outbox):
                        if due <= self.t_ms:
                            head = (due, m)
                            del self._outbox[k]
                            self._outbox.appendleft(head)
                            break
            if head is not None and link is not None and link.connected:
                try:
                    link.send(head[1])
                    with self._lock:
                        if self._outbox and self._outbox[0] is head:
                            self._outbox.popleft()
                except LinkDown:
                    self._stop.wait(0.02)
                continue
            now = time.monotonic()
            if link is not None and link.connected and now - last_hb >= 0.1:
                last_hb = now
                with self._lock:
                    hb = Heartbeat(int(self.t_ms), self.running, self.estop, self.jammed, self.speed_mm_s)
                try:
                    link.send(hb)
                except LinkDown:
                    pass
                continue
            self._stop.wait(0.003)

    # ---------------------------------------------------------------------------------------- views

    def idle(self) -> bool:
        with self._lock:
            return self.exhausted and not self.on_belt and not self._outbox
