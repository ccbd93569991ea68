"""Hardware and sync state for the status bar and the dashboard (no Qt). :func:`read_station_status` runs on
the worker thread (it reads the store and the backends' flags); the ``*_text`` functions run on the UI thread
and say it in the current language."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hardware.conveyor import BenchTotes, SimulatedConveyor
from station.licence_plate import labels_status
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
    # absent (no [scale]) | not_open | connected | disconnected | stable | unstable | empty | fault
    scale: str = "absent"
    scale_grams: float | None = None
    labels: str = "off"  # off (no printer) | ok | waiting
    labels_waiting: int = 0
    labels_error: str = ""  # the oldest waiting label's last print failure


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


def _scale_state(scale) -> tuple[str, float | None]:
    """(state, grams of the last stable weighing); the scale opens on the first weighing."""
    if scale is None:
        return "absent", None
    last = getattr(scale, "last_measurement", None)
    if not getattr(scale, "connected", False):
        return ("disconnected" if last is not None or getattr(scale, "last_error", "") else "not_open"), None
    if last is None:
        return "connected", None
    state = str(last.state)
    if state == "stable":
        return "stable", last.grams
    return (state if state in ("unstable", "empty") else "fault"), None


def _labels_state(outbound) -> tuple[str, int, str]:
    """(state, labels waiting, the oldest waiting one's last failure) from the label spool (labels.db)."""
    if outbound is None or getattr(outbound, "printer", None) is None:
        return "off", 0, ""
    status = labels_status(outbound.data_dir / "labels.db")
    waiting = int(status["unprinted"])
    error = next((lab.get("last_error") or "" for lab in status["unprinted_labels"]), "")
    return ("waiting" if waiting else "ok"), waiting, error


def read_station_status(station) -> StationStatus:
    """Worker thread only: reads the backends' state flags, the label spool and the store's sync state."""
    conveyor, estop, jammed = _conveyor_state(station.conveyor)
    scale, grams = _scale_state(getattr(station.pipeline, "scale", None))
    labels, waiting, error = _labels_state(getattr(station.pipeline, "outbound", None))
    return StationStatus(_camera_state(station.camera), conveyor, estop, jammed,
                         station.config.sync.url is not None, read_status(station.store),
                         scale, grams, labels, waiting, error)


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
    line = tr("Camera: {camera} · Conveyor: {conveyor} · E-stop: {estop} · Scanner: keyboard wedge",
              camera=camera, conveyor=conveyor, estop=estop)
    if s.scale != "absent":  # only stations with a scale or a printer say anything about them
        scale = (tr("stable {grams} g", grams=f"{s.scale_grams:.1f}") if s.scale == "stable" and s.scale_grams
                 is not None else {"not_open": tr("not opened yet"), "connected": tr("connected"),
                                   "disconnected": tr("DISCONNECTED"), "unstable": tr("unstable"),
                                   "empty": tr("empty"), "fault": tr("fault")}.get(s.scale, s.scale))
        line += " · " + tr("Scale: {state}", state=scale)
    if s.labels != "off":
        if s.labels == "ok":
            line += " · " + tr("Labels: ok")
        else:
            line += " · " + tr("Labels: {n} waiting", n=s.labels_waiting)
            if s.labels_error:
                line += " · " + tr("last failure: {error}", error=s.labels_error)
    return line


def alarm(s: StationStatus | None) -> bool:
    """Something an operator must act on (the status bar turns red)."""
    return s is not None and bool(s.estop or s.jammed or s.conveyor == "down")
