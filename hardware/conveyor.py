"""Conveyor interface and the in-process simulated conveyor.

The pipeline only needs to tell the line where an item goes; the serial and Modbus drivers (and the
simulator that speaks their bytes) plug in behind the same interface.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol


class ConveyorError(RuntimeError):
    """The conveyor refused or could not carry out a command."""


@dataclass(frozen=True, slots=True)
class DivertEvent:
    item_seq: int
    lane: int
    at: float


class Conveyor(Protocol):
    def divert(self, item_seq: int, lane: int) -> DivertEvent: ...

    def close(self) -> None: ...


class SimulatedConveyor:
    """Keeps every divert it was sent, in order; refuses a lane the line does not have."""

    def __init__(self, lanes: int = 8) -> None:
        self.lanes = lanes
        self.diverts: list[DivertEvent] = []
        self._lock = threading.Lock()

    def divert(self, item_seq: int, lane: int) -> DivertEvent:
        if not 0 <= lane < self.lanes:
            raise ConveyorError(f"lane {lane} does not exist on this line (lanes 0..{self.lanes - 1})")
        event = DivertEvent(item_seq, lane, time.monotonic())
        with self._lock:
            self.diverts.append(event)
        return event

    def close(self) -> None:
        pass


class BenchTotes:
    """No conveyor: at a QC bench the inspector is told which tote; the 'divert' is that instruction."""

    def __init__(self) -> None:
        self.instructions: list[DivertEvent] = []

    def divert(self, item_seq: int, lane: int) -> DivertEvent:
        event = DivertEvent(item_seq, lane, time.monotonic())
        self.instructions.append(event)
        return event

    def close(self) -> None:
        pass
