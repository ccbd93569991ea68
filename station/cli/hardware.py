"""Hardware commands: `station run --headless`, `station sim-conveyor`, `station bench conveyor`."""

import signal
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.bench.conveyor import identify, run_conveyor_bench, simulated_labels, stager
from station.cli.common import ConfigOpt, DataDirOpt, boot, err, fail, print_json, station_config


app = typer.Typer()
bench_app = typer.Typer()


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
        print_json(report)
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
    print_json({"items": len(sim.ledger), "faults_injected": sim.faults_injected,
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
    cfg = station_config(config, data_dir)
    if not isinstance(cfg.conveyor, (SerialConveyorConfig, ModbusConveyorConfig)):
        fail('conveyor mode needs conveyor.type = "serial" or "modbus" with a url '
             '(see docs/conveyor-protocol.md, docs/conveyor-modbus.md)')
    c = cfg.conveyor
    station = boot(cfg)
    try:
        station.conveyor.open(wait_s=3)
    except ConveyorError as exc:
        station.close()
        fail(f"{exc}\ncheck conveyor.url, the cable, and that the line (or `station sim-conveyor`) is running")
    settings = ConveyorModeSettings(time_scale=time_scale, decision_budget_ms=c.decision_budget_ms,
                                    margin_ms=c.margin_ms, capture_window_ms=c.capture_window_ms,
                                    min_gap_mm=c.min_gap_mm)
    log_path = cfg.station.data_dir / "conveyor-events.jsonl"
    mode = ConveyorMode(station, station.conveyor, identify, settings, stage=stager(station),
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
    print_json({"inspected": s.inspected, "exited": s.exited, "manual_review": s.exited_manual,
                 "first_item_seq": first, "passed_before_station": max(0, (first or 1) - 1),
                 "not_inspected": s.not_inspected, "missed_triggers": s.missed_triggers,
                 "forced_review": s.forced_review, "record_overrides": s.overrides, "link_downs": s.link_downs,
                 "estops": s.estops, "jams": s.jams})
