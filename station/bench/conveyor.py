"""`station bench conveyor`: the conveyor simulator on a pty (real bytes), conveyor mode and the real pipeline;
throughput, mis-sorts, faults. Also the simulated parcel labels `station sim-conveyor` feeds its belt with and
the synthetic camera's stager `station run` uses on a simulated line."""

import threading
import time
from pathlib import Path

from station.bench.stats import percentile
from station.domain import ReturnRequest

# --------------------------------------------------------------------------------- simulated labels


def staged_fields(staged) -> dict[str, str]:
    """Simulation-only label fields: what the synthetic camera should render for this parcel."""
    defects = ",".join(f"{v}:{'+'.join(d)}" for v, d in staged.defects.items() if d)
    return {"x": staged.looks_like_sku, "d": defects, "z": str(staged.seed)}


def stage_from_fields(fields: dict[str, str]):
    from vision.camera import StagedItem

    defects = {}
    for part in filter(None, fields.get("d", "").split(",")):
        view, _, names = part.partition(":")
        defects[view] = tuple(filter(None, names.split("+")))
    return StagedItem(fields["x"], defects, int(fields.get("z", "0")))


def simulated_labels(n: int, seed: int) -> list[str]:
    from station.demo import simulated_returns
    from station.labels import format_rma2

    return [format_rma2(s.request, staged_fields(s.staged)) for s in simulated_returns(n, seed)]


def identify(code: str) -> ReturnRequest:
    from station.labels import parse_rma

    return parse_rma(code)


def stager(station):
    """For a synthetic camera: stage what the simulated label says is in the parcel."""
    from station.labels import parse_return_code
    from vision.camera import SyntheticCamera

    if not isinstance(station.camera, SyntheticCamera):
        return None

    def stage(code: str) -> None:
        _, fields = parse_return_code(code)
        if "x" not in fields:
            raise ValueError("synthetic camera: the label carries no simulated look (x=)")
        station.camera.stage(stage_from_fields(fields))

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
        mode = ConveyorMode(station, station.conveyor, identify, settings, stage=stager(station),
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
