"""Hardware and sync state for the status bar and the dashboard (no Qt). :func:`read_station_status` runs on
the worker thread (it reads the store and the backends' flags); the ``*_text`` functions run on the UI thread
and say it in the current language."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hardware.conveyor import BenchTotes, SimulatedConveyor
from station.sync import SyncStatus, read_status
from ui.i18n import tr
from vision.camera import FolderCamera, SyntheticCamera


@dataclass(frozen=True, slots=True)
class StationStatus:
    camera: str  # simulated | replay | connected | not_open
    conveyor: str  # simulated | bench | connected | down
    estop: bool | None  # None: the backend does not report it
    jammed: bool | None
    sync_configured: bool
    sync: SyncStatus | None


def _camera_state(camera) -> str:
    if isinstance(camera, SyntheticCamera):
        return "simulated"
    if isinstance(camera, FolderCamera):
        return "replay"
    # OpenCVCamera opens lazily (first capture or live-view frame): until then nothing is connected.
    return "connected" if getattr(camera, "is_open", False) else "not_open"


def _conveyor_state(conveyor) -> tuple[str, bool | None, bool | None]:
    """(state, e-stop, jam); the serial and Modbus lines report all three, the others none."""
    if isinstance(conveyor, SimulatedConveyor):
        return "simulated", None, None
    if isinstance(conveyor, BenchTotes):
        return "bench", None, None
    alive = getattr(conveyor, "alive", None)
    up = bool(alive()) if callable(alive) else False
    return ("connected" if up else "down"), getattr(conveyor, "estop", None), getattr(conveyor, "jammed", None)


def read_station_status(station) -> StationStatus:
    """Worker thread only: reads the backends' state flags and the store's sync state (one small query)."""
    conveyor, estop, jammed = _conveyor_state(station.conveyor)
    return StationStatus(_camera_state(station.camera), conveyor, estop, jammed,
                         station.config.sync.url is not None, read_status(station.store))


# ------------------------------------------------------------------------------------------- texts


def _when(iso: str | None) -> str:
    if not iso:
        return tr("never")
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return t.astimezone().strftime("%m-%d %H:%M")


def sync_text(configured: bool, sync: SyncStatus | None) -> str:
    if sync is None:
        return tr("Sync: ...")
    if not configured:
        state = tr("off (no platform configured)")
    elif sync.consecutive_failures:
        state = tr("offline ({n} failed attempt)" if sync.consecutive_failures == 1 else
                   "offline ({n} failed attempts)", n=sync.consecutive_failures)
    elif sync.last_success:
        state = tr("online")
    else:
        state = tr("not synced yet")
    text = ("Sync: {state} · {n} record pending · last success {when}" if sync.pending == 1 else
            "Sync: {state} · {n} records pending · last success {when}")
    line = tr(text, state=state, n=sync.pending, when=_when(sync.last_success))
    if sync.dead_letter:  # refused by the platform for good: someone must look (station sync --status)
        line += " · " + tr("{n} record refused by the platform" if sync.dead_letter == 1 else
                           "{n} records refused by the platform", n=sync.dead_letter)
    return line


def hardware_text(s: StationStatus | None) -> str:
    if s is None:
        return tr("Camera: ... · Conveyor: ...")
    camera = {"simulated": tr("simulated"), "replay": tr("folder replay"), "connected": tr("connected"),
              "not_open": tr("not opened yet")}[s.camera]
    conveyor = {"simulated": tr("simulated"), "bench": tr("bench totes"), "connected": tr("connected"),
                "down": tr("DISCONNECTED")}[s.conveyor]
    if s.estop:
        conveyor += " · " + tr("E-STOP")
    if s.jammed:
        conveyor += " · " + tr("JAM")
    estop = tr("not reported") if s.estop is None else (tr("PRESSED") if s.estop else tr("clear"))
    return tr("Camera: {camera} · Conveyor: {conveyor} · E-stop: {estop} · Scanner: keyboard wedge",
              camera=camera, conveyor=conveyor, estop=estop)


def alarm(s: StationStatus | None) -> bool:
    """Something an operator must act on (the status bar turns red)."""
    return s is not None and bool(s.estop or s.jammed or s.conveyor == "down")
