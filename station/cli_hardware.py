"""Hardware commands: `station run --headless`, `station sim-conveyor`, `station bench conveyor`.

Registered from station/cli.py's subsystem block with ``register(app, bench_app)``.
"""

import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.domain import ReturnRequest, percentile

# --------------------------------------------------------------------------------- simulated labels


def _staged_fields(staged) -> dict[str, str]:
    """Simulation-only label fields: what the synthetic camera should render for this parcel."""
    defects = ",".join(f"{v}:{'+'.join(d)}" for v, d in staged.defects.items() if d)
    return {"x": staged.looks_like_sku, "d": defects, "z": str(staged.seed)}


def _stage_from_fields(fields: dict[str, str]):
    from vision.camera import StagedItem

    defects = {}
    for part in filter(None, fields.get("d", "").split(",")):
        view, _, names = part.partition(":")
        defects[view] = tuple(filter(None, names.split("+")))
    return StagedItem(fields["x"], defects, int(fields.get("z", "0")))


def simulated_labels(n: int, seed: int) -> list[str]:
    from station.demo import simulated_returns
    from station.labels import format_rma2

    return [format_rma2(s.request, _staged_fields(s.staged)) for s in simulated_returns(n, seed)]


def _identify(code: str) -> ReturnRequest:
    from station.labels import parse_rma

    return parse_rma(code)


def _stager(station):
    """For a synthetic camera: stage what the simulated label says is in the parcel."""
    from station.labels import parse_return_code
    from vision.camera import SyntheticCamera

    if not isinstance(station.camera, SyntheticCamera):
        return None

    def stage(code: str) -> None:
        _, fields = parse_return_code(code)
        if "x" not in fields:
            raise ValueError("synthetic camera: the label carries no simulated look (x=)")
        station.camera.stage(_stage_from_fields(fields))

    return stage


# --------------------------------------------------------------------------------- bench


FAULT_ARGS = {"drop_bytes": 2, "corrupt_bytes": 2, "unplug": 2000, "jam": 4000, "estop": 3000, "late_item": 4000,
              "items_too_close": 0}


def run_conveyor_bench(minutes: float, faults: bool, time_scale: float, data_dir: Path, seed: int = 3,
                       pitch_mm: int = 850, progress=None) -> dict:
    """Simulator on a pty + conveyor mode + the real pipeline; returns the bench report."""
    from hardware.protocol import SimFault
    from hardware.simulator import ConveyorSimulator, LineGeometry
    from station.app import boot
    from station.config import SerialConveyorConfig, StationConfig
    from station.conveyor_mode import ConveyorMode, ConveyorModeSettings

    geo = LineGeometry(pitch_mm=pitch_mm)
    belt_ms = minutes * 60_000
    n_items = int(belt_ms / 1000 * geo.speed_mm_s / (geo.item_length_mm + geo.min_gap_mm // 3)) + 10
    labels = simulated_labels(n_items, seed)
    feed = iter(labels)
    run_over = threading.Event()

    def next_label() -> str | None:
        return None if run_over.is_set() else next(feed, None)

    port = data_dir / "conveyor.pty"
    first_gate = min(geo.gates_mm.values())
    budget = (first_gate - (geo.eye_mm - geo.item_length_mm / 2)) / geo.speed_mm_s * 1000
    cfg = StationConfig(station={"data_dir": data_dir}, conveyor=SerialConveyorConfig(type="serial", url=str(port)))
    settings = ConveyorModeSettings(time_scale=time_scale, decision_budget_ms=budget, min_gap_mm=geo.min_gap_mm)
    from station.domain import Disposition

    if cfg.lane_for(Disposition.MANUAL_REVIEW) != geo.end_lane:
        raise ValueError("the belt's end lane must be the manual-review lane")
    sim = ConveyorSimulator(port, next_label, geo, time_scale=time_scale, seed=seed, autostart=False)
    station = boot(cfg)
    mode = None
    t_wall = time.monotonic()
    try:
        sim.start()
        station.conveyor.open(wait_s=5)
        mode = ConveyorMode(station, station.conveyor, _identify, settings, stage=_stager(station),
                            event_log=data_dir / "conveyor-events.jsonl").start()
        mode.start_line()
        kinds = list(SimFault)
        schedule: list[tuple[float, SimFault]] = []
        if faults:
            rounds = max(1, int(minutes // 3))
            slots = len(kinds) * rounds
            for k in range(slots):
                schedule.append((belt_ms * (0.05 + 0.9 * k / slots), kinds[k % len(kinds)]))
        next_report = 0.0
        while sim.t_ms < belt_ms:
            while schedule and sim.t_ms >= schedule[0][0]:
                _, fault = schedule.pop(0)
                sim.inject(fault, FAULT_ARGS[fault.name.lower()])
            if progress and sim.t_ms >= next_report:
                progress(f"belt {sim.t_ms / 60000:5.2f}/{minutes} min  exited {len(sim.ledger)}  "
                         f"inspected {mode.stats.inspected}")
                next_report += 60_000
            time.sleep(0.05)
        run_over.set()
        sim.exhausted = True
        spawned = sim._next_seq - 1
        deadline = time.monotonic() + 60
        while (not sim.idle() or mode.busy()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        if mode is not None:
            mode.stop()
        link_stats = station.conveyor.link.stats
        station.close()
        sim.close()
    wall_s = time.monotonic() - t_wall
    manual = geo.end_lane
    tracked = {i.seq: i for i in mode.items.values()}
    first_lane = dict(mode.first_lanes)
    mis_sorts = []
    margins = []
    for o in sim.ledger:
        decided = first_lane.get(o.seq)
        if o.lane != manual and o.lane != decided:
            mis_sorts.append({"item": o.seq, "lane": o.lane, "record_lane": decided, "collateral": o.collateral})
        if o.margin_ms is not None and o.lane != manual:
            margins.append(o.margin_ms)
    mismatched = [o.seq for o in sim.ledger if o.seq in tracked and tracked[o.seq].record_id is not None
                  and tracked[o.seq].record_lane != o.lane]
    s = mode.stats
    return {
        "items": len(sim.ledger),
        "items_per_hour": round(spawned / (belt_ms / 3_600_000), 1),
        "mis_sorts": len(mis_sorts),
        "manual_review": sum(o.lane == manual for o in sim.ledger),
        "faults_injected": dict(sorted(sim.faults_injected.items())),
        "divert_margin_ms_p5": None if not margins else round(percentile(margins, 0.05), 1),
        "items_spawned": spawned,
        "inspected": s.inspected,
        "not_inspected": s.not_inspected,
        "missed_triggers": s.missed_triggers,
        "diverted": sum(o.lane != manual for o in sim.ledger),
        "forced_review": s.forced_review,
        "record_overrides": s.overrides,
        "records_not_matching_lane": len(mismatched),
        "taken_off_by_hand": sum(o.by_hand for o in sim.ledger),
        "link": {"retransmits": link_stats.retransmits, "reconnects": link_stats.reconnects,
                 "decode_errors": link_stats.decode_errors, "duplicates": link_stats.duplicates},
        "mis_sort_items": mis_sorts[:20],
        "belt_minutes": minutes,
        "time_scale": time_scale,
        "wall_s": round(wall_s, 1),
        "views_per_item": len(cfg.station.views),
        "pipeline": "real (station.app.boot: ONNX detector, comparer, rules, store)",
    }


# --------------------------------------------------------------------------------- registration


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    from station.cli import ConfigOpt, DataDirOpt, _boot, _config, _print_json, err, fail

    @bench_app.command("conveyor")
    def bench_conveyor(
        minutes: Annotated[float, typer.Option(min=0.1, help="simulated belt minutes")] = 10.0,
        faults: Annotated[bool, typer.Option("--faults", help="inject every fault kind during the run")] = False,
        time_scale: Annotated[float, typer.Option(min=0.1, max=20, help="belt ms per wall ms")] = 4.0,
        pitch_mm: Annotated[int, typer.Option(min=400, max=5000, help="item spacing, nose to nose")] = 850,
        json_out: Annotated[bool, typer.Option("--json")] = False,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Simulated line (pty, real bytes) + conveyor mode + the real pipeline: throughput, mis-sorts, faults."""
        with tempfile.TemporaryDirectory() as tmp:
            root = data_dir or Path(tmp)
            report = run_conveyor_bench(minutes, faults, time_scale, root, pitch_mm=pitch_mm,
                                        progress=lambda m: err.print(m, highlight=False))
        if json_out:
            _print_json(report)
            return
        for k, v in report.items():
            err.print(f"{k}: {v}", highlight=False)

    @app.command("sim-conveyor")
    def sim_conveyor(
        port: Annotated[Path, typer.Option(help="symlink to create for the simulator's pty (the station's url)")],
        items: Annotated[int, typer.Option(min=1, help="simulated returns to put on the belt")] = 1000,
        time_scale: Annotated[float, typer.Option(min=0.1, max=20)] = 1.0,
        pitch_mm: Annotated[int, typer.Option(min=400, max=5000)] = 850,
        seed: Annotated[int, typer.Option()] = 3,
        protocol: Annotated[str, typer.Option(help="serial: the station protocol (docs/conveyor-protocol.md); "
                                              "modbus: a Modbus RTU slave (docs/conveyor-modbus.md)")] = "serial",
        slave: Annotated[int, typer.Option(min=1, max=247, help="Modbus slave id (--protocol modbus)")] = 1,
        autostart: Annotated[bool, typer.Option(
            "--autostart", help="run the belt at once instead of waiting for the station's start command "
            "(items that pass before a station listens are neither inspected nor recorded)")] = False,
    ) -> None:
        """Run the conveyor simulator on a pty until Ctrl-C; faults are injected with SIM_FAULT frames (serial)
        or the SIM_FAULT holding registers (modbus). The belt waits for the station to start it, as a line
        under a station's control does, so no item passes the camera before `station run` is listening."""
        from hardware.simulator import ConveyorSimulator, LineGeometry

        if protocol not in ("serial", "modbus"):
            fail(f"unknown --protocol {protocol!r}: use serial or modbus")

        if port.exists() and not port.is_symlink():
            fail(f"{port} exists and is not a symlink: pick another --port path")
        if not port.parent.is_dir():
            fail(f"folder {port.parent} does not exist")
        feed = iter(simulated_labels(items, seed))
        if protocol == "modbus":
            from hardware.modbus_sim import ModbusConveyorSimulator

            sim = ModbusConveyorSimulator(port, lambda: next(feed, None), LineGeometry(pitch_mm=pitch_mm),
                                          time_scale=time_scale, seed=seed, slave=slave, autostart=autostart)
        else:
            sim = ConveyorSimulator(port, lambda: next(feed, None), LineGeometry(pitch_mm=pitch_mm),
                                    time_scale=time_scale, seed=seed, autostart=autostart)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        sim.start()
        belt = "belt running" if autostart else "belt stopped until the station starts it"
        err.print(f"{protocol} simulator on {port} -> {port.resolve()} (time scale {time_scale}, {belt}); "
                  f"Ctrl-C to stop")
        try:
            while not stop.wait(0.2) and not sim.idle():
                pass
        except KeyboardInterrupt:
            pass
        finally:
            sim.close()
        _print_json({"items": len(sim.ledger), "faults_injected": sim.faults_injected,
                     "lanes": {str(k): sum(o.lane == k for o in sim.ledger) for k in sorted({o.lane for o in sim.ledger})}})

    @app.command("run")
    def run(
        headless: Annotated[bool, typer.Option("--headless", help="conveyor mode without the desktop UI")] = False,
        max_items: Annotated[Optional[int], typer.Option(min=1, help="stop after this many items left the line")] = None,
        time_scale: Annotated[float, typer.Option(min=0.1, max=20, help="only for a simulator running faster")] = 1.0,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Conveyor mode: inspect items as the line delivers them, divert each before its gate."""
        from hardware.conveyor import ConveyorError
        from station.config import ModbusConveyorConfig, SerialConveyorConfig
        from station.conveyor_mode import ConveyorMode, ConveyorModeSettings

        if not headless:
            fail("only `station run --headless` is available here (the desktop UI has its own command)")
        cfg = _config(config, data_dir)
        if not isinstance(cfg.conveyor, (SerialConveyorConfig, ModbusConveyorConfig)):
            fail('conveyor mode needs conveyor.type = "serial" or "modbus" with a url '
                 '(see docs/conveyor-protocol.md, docs/conveyor-modbus.md)')
        c = cfg.conveyor
        station = _boot(cfg)
        try:
            station.conveyor.open(wait_s=3)
        except ConveyorError as exc:
            station.close()
            fail(f"{exc}\ncheck conveyor.url, the cable, and that the line (or `station sim-conveyor`) is running")
        settings = ConveyorModeSettings(time_scale=time_scale, decision_budget_ms=c.decision_budget_ms,
                                        margin_ms=c.margin_ms, capture_window_ms=c.capture_window_ms,
                                        min_gap_mm=c.min_gap_mm)
        log_path = cfg.station.data_dir / "conveyor-events.jsonl"
        mode = ConveyorMode(station, station.conveyor, _identify, settings, stage=_stager(station),
                            event_log=log_path).start()
        mode.start_line()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        err.print(f"conveyor mode on {c.url}; events -> {log_path}; Ctrl-C to stop")
        first = None  # the first item number this station saw (the table of items is pruned on long runs)
        try:
            while not stop.wait(0.2):
                if first is None and mode.items:
                    try:
                        first = min(tuple(mode.items))
                    except (RuntimeError, ValueError):  # the reader thread added one meanwhile: next turn
                        pass
                if max_items is not None and mode.stats.exited >= max_items:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            mode.stop()
            station.close()
        s = mode.stats
        if first is None and mode.items:
            first = min(tuple(mode.items))
        if first is not None and first > 1:
            # A line numbers its items from 1 when it starts: a first item numbered N means N-1 had already
            # passed the camera before this station was listening (the belt was running before it connected).
            err.print(f"the first item this station saw was #{first}: the {first - 1} before it passed before the "
                      f"station was listening (the belt ran before `station run` connected), so they were not "
                      f"inspected or recorded; let the station start the belt (`station sim-conveyor` without "
                      f"--autostart)", highlight=False, soft_wrap=True)
        _print_json({"inspected": s.inspected, "exited": s.exited, "manual_review": s.exited_manual,
                     "first_item_seq": first, "passed_before_station": max(0, (first or 1) - 1),
                     "not_inspected": s.not_inspected, "missed_triggers": s.missed_triggers,
                     "forced_review": s.forced_review, "record_overrides": s.overrides, "link_downs": s.link_downs,
                     "estops": s.estops, "jams": s.jams})
