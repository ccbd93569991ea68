"""`station bench pipeline`: per-stage p50/p95 over simulated items on built-in defaults, the share of time in
each stage, and (when the unseen-damage check is on) the same items with it off."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from station.bench.stats import percentile


def run_pipeline_bench(items: int, data_dir: Path | None, make_config: Callable[[Path], object],
                       boot: Callable[[object], object]) -> dict:
    """The bench report. ``make_config(data_dir)`` gives the station config (built-in defaults in that data dir),
    ``boot(cfg)`` the booted station (the CLI's, which reports a data dir or model it cannot use)."""
    from station.demo import simulated_returns
    from station.pipeline import STAGES

    def measure(cfg) -> dict[str, list[float]]:
        station = boot(cfg)
        timings: dict[str, list[float]] = {s: [] for s in (*STAGES, "capture")}
        try:
            for i, sim in enumerate(simulated_returns(items, seed=1)):
                station.camera.stage(sim.staged)
                t0 = time.perf_counter()
                frames = [station.camera.capture(v) for v in cfg.station.views]
                timings["capture"].append((time.perf_counter() - t0) * 1000)
                res = station.pipeline.inspect(sim.request, frames, item_seq=i + 1)
                for s in STAGES:
                    timings[s].append(res.record.timings_ms.get(s, 0.0))
        finally:
            station.close()
        return timings

    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(data_dir or Path(tmp) / "station")
        timings = measure(cfg)
        baseline = None
        if cfg.comparer.unseen_damage:
            # Side by side in one run: the same items with the unseen-damage check off, in a data dir of its own.
            off = cfg.model_copy(update={"comparer": cfg.comparer.model_copy(update={"unseen_damage": False}),
                                         "station": cfg.station.model_copy(update={"data_dir": Path(tmp) / "off"})})
            base = measure(off)
            baseline = [sum(base[s][i] for s in STAGES) for i in range(items)]

    pct = percentile
    decide_total = sum(sum(timings[s]) for s in STAGES)
    per_item = [sum(timings[s][i] for s in STAGES) for i in range(items)]
    report = {
        "items": items,
        "views_per_item": len(cfg.station.views),
        "stages": {s: {"p50_ms": round(pct(timings[s], 0.5), 2), "p95_ms": round(pct(timings[s], 0.95), 2),
                       "share": round(sum(timings[s]) / decide_total, 4)} for s in STAGES},
        "decision_ms": {"p50": round(pct(per_item, 0.5), 2), "p95": round(pct(per_item, 0.95), 2)},
        "synthetic_capture_ms": {"p50": round(pct(timings["capture"], 0.5), 2)},
    }
    if baseline is not None:
        report["without_unseen_damage_ms"] = {"p50": round(pct(baseline, 0.5), 2), "p95": round(pct(baseline, 0.95), 2)}
    return report
