"""A conveyor driven over serial with the station protocol (hardware.protocol, hardware.serial_link).

Same interface as hardware.conveyor (``divert``, ``close``) plus belt start/stop/speed, the line's events
(photo-eyes, e-stop, jam, items leaving) as a queue, and a heartbeat both ways. Nothing opens in the
constructor: ``open()`` starts the link (and reconnects by itself after an unplug).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

from hardware.conveyor import ConveyorError, DivertEvent
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
from hardware.serial_link import LinkDown, LinkError, SerialLink, SerialTransport

LineEvent = ItemEntered | ItemAtGate | ItemExited | EStop | Jam


@dataclass(frozen=True, slots=True)
class LinkState:
    """A link state change, put on the event queue so consumers see it in order with the line's events."""

    up: bool
    at: float


class DivertRefused(ConveyorError):
    def __init__(self, item_seq: int, lane: int, status: AckStatus) -> None:
        self.item_seq, self.lane, self.status = item_seq, lane, status
        super().__init__(f"line refused divert of item {item_seq} to lane {lane}: {status.name.lower()}")


class SerialConveyor:
    def __init__(self, url: str, lanes: int = 8, baudrate: int = 115200, heartbeat_s: float = 0.2,
                 stale_s: float = 1.0, ack_timeout_s: float = 0.05, retries: int = 8) -> None:
        self.url = url
        self.lanes = lanes
        self.baudrate = baudrate
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.events: queue.Queue[LineEvent | LinkState] = queue.Queue()
        self.diverts: list[DivertEvent] = []
        self.last_heartbeat: Heartbeat | None = None
        self.last_heartbeat_at = 0.0
        self.estop = False
        self.jammed = False
        self._link = SerialLink(lambda: SerialTransport(url, baudrate), self._handle, name=f"conveyor {url}",
                                ack_timeout=ack_timeout_s, retries=retries, on_state=self._on_state)
        self._stop = threading.Event()
        self._hb_thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- lifecycle

    def open(self, wait_s: float = 2.0) -> "SerialConveyor":
        """Start the link; ConveyorError (with the port's own message) if it is not up within ``wait_s``."""
        self._link.start()
        if not self._link.wait_connected(wait_s):
            reason = self._link.last_error or "no answer"
            self._link.close()
            raise ConveyorError(reason)
        self._hb_thread = threading.Thread(target=self._heartbeat, name="conveyor-heartbeat", daemon=True)
        self._hb_thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join(timeout=2)
        self._link.close()

    @property
    def link(self) -> SerialLink:
        return self._link

    def alive(self) -> bool:
        """Connected and the line spoke within ``stale_s`` (a silent line is treated as down)."""
        return self._link.connected and time.monotonic() - self._link.last_rx < self.stale_s

    # ---------------------------------------------------------------------------------------- inbound

    def _on_state(self, up: bool) -> None:
        self.events.put(LinkState(up, time.monotonic()))

    def _handle(self, msg: Message) -> AckStatus:
        if isinstance(msg, Heartbeat):
            self.last_heartbeat, self.last_heartbeat_at = msg, time.monotonic()
            self.estop, self.jammed = msg.estop, msg.jammed
            return AckStatus.OK
        if isinstance(msg, EStop):
            self.estop = msg.active
        elif isinstance(msg, Jam):
            self.jammed = msg.active
        if isinstance(msg, (ItemEntered, ItemAtGate, ItemExited, EStop, Jam)):
            self.events.put(msg)
            return AckStatus.OK
        return AckStatus.UNSUPPORTED

    def belt_clock_ms(self, time_scale: float = 1.0) -> float | None:
        """The line's belt clock now, extrapolated from its last heartbeat; None before the first one."""
        hb = self.last_heartbeat
        if hb is None:
            return None
        return hb.belt_clock_after(time.monotonic() - self.last_heartbeat_at, time_scale)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if self._link.connected:
                try:
                    self._link.send(Heartbeat())
                except LinkDown:
                    pass

    # ---------------------------------------------------------------------------------------- commands

    def _command(self, msg: Message) -> AckStatus:
        try:
            return self._link.send(msg)
        except LinkDown as exc:
            raise ConveyorError(f"conveyor link down: {exc}") from None
        except LinkError as exc:
            raise ConveyorError(str(exc)) from None

    def divert(self, item_seq: int, lane: int) -> DivertEvent:
        if not 0 <= lane < self.lanes:
            raise ConveyorError(f"lane {lane} does not exist on this line (lanes 0..{self.lanes - 1})")
        status = self._command(Divert(item_seq, lane))
        if status is not AckStatus.OK:
            raise DivertRefused(item_seq, lane, status)
        event = DivertEvent(item_seq, lane, time.monotonic())
        self.diverts.append(event)
        return event

    def start_belt(self) -> None:
        self._expect_ok(self._command(Belt(BeltCommand.START)), "start the belt")

    def stop_belt(self) -> None:
        self._expect_ok(self._command(Belt(BeltCommand.STOP)), "stop the belt")

    def set_speed(self, mm_s: int) -> None:
        if not 0 < mm_s <= 0xFFFF:
            raise ConveyorError(f"belt speed {mm_s} mm/s out of range")
        self._expect_ok(self._command(Belt(BeltCommand.SET_SPEED, mm_s)), f"set the belt speed to {mm_s} mm/s")

    def reset(self) -> None:
        self._expect_ok(self._command(Reset()), "reset the line (clear the e-stop or jam first)")

    def inject_fault(self, fault: SimFault, arg: int = 0) -> None:
        """Simulator only: a real line answers UNSUPPORTED."""
        self._expect_ok(self._command(SimFaultCommand(fault, arg)), f"inject {fault.name.lower()}")

    @staticmethod
    def _expect_ok(status: AckStatus, what: str) -> None:
        if status is not AckStatus.OK:
            raise ConveyorError(f"the line refused to {what}: {status.name.lower()}")
