"""`station bench fleet`: many stations, one platform on a real database (issue 21, "The fleet").

N station processes (``python -m station.bench.fleet worker``), each with its own data dir, its own store and
the real :class:`station.sync.SyncClient`, sync concurrently to one platform process (``station
serve-platform``) on PostgreSQL. Each station reaches the platform through its own TCP proxy on 127.0.0.1,
so one station's network can be cut (listener closed, open connections reset) and restored. Mid-run the
platform is killed (SIGKILL, in-flight transactions lost) and started again once.

Afterwards every station's store is compared with the platform: records lost (on a station, not on the
platform, or still pending), duplicated (on the platform beyond what the station holds, or kept as a
conflicting version), heads (the platform's witnessed heads are roots of the station's own log, the last
one is the station's latest, no head refused), and the platform's brand and streamer aggregates against
the sum of what the stations hold. Figures: records/s from "go" until the last station is fully synced
(faults, restart and live inspections included) and p50/p95 latency of a batch push (one ``push_batch``:
its images, thumbnails, records and signed head, acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from station.bench.fleet_checks import aggregate_mismatches, check_station, expected_aggregates

OVERRIDE_EVERY = 10  # every 10th inspection of a station is overridden on the station (a supervisor re-check)
PREFILL_SHARE = 0.8  # the rest is inspected while the station syncs
_PR_SET_PDEATHSIG = 1
TOKEN_ENV = "FLEET_STATION_TOKEN"  # how a station worker gets its token


class FleetError(RuntimeError):
    """The fleet could not be set up or run (a platform that does not start, a station that fails)."""


@dataclass(frozen=True, slots=True)
class FleetSettings:
    stations: int = 20
    records: int = 500  # inspections per station (overrides come on top: one per OVERRIDE_EVERY)
    batch_size: int = 50
    live_seconds: float = 4.0  # how long each station keeps inspecting after "go" (at least)
    cut_at: float = 0.15  # progress (share of records on the platform) at which station 0's network is cut
    restart_at: float = 0.40  # ... at which the platform is killed and restarted
    restore_after_s: float = 1.5  # station 0's network comes back this long after the platform is up again
    deadline_s: float = 900.0


@dataclass(slots=True)
class FleetEvent:
    name: str
    at_s: float  # seconds after "go"
    progress: float  # share of all records on the platform then
    stations_running: int
    station0_running: bool  # the station whose network is cut
    detail: str = ""

    def to_json(self) -> dict:
        return {"event": self.name, "at_s": round(self.at_s, 3), "progress": round(self.progress, 4),
                "stations_running": self.stations_running, "cut_station_running": self.station0_running,
                **({"detail": self.detail} if self.detail else {})}


@dataclass(slots=True)
class _Station:
    index: int
    station_id: str
    data_dir: Path
    token: str
    port: int
    proc: subprocess.Popen | None = None
    stats: dict = field(default_factory=dict)


def _die_with_parent(sig: int = signal.SIGKILL):
    def hook() -> None:  # pragma: no cover - runs in the forked child
        # A killed benchmark takes its stations and its platform with it.
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
        except OSError:
            pass

    return hook


# ------------------------------------------------------------------------------------------- network


class StationLinks:
    """One TCP proxy per station on 127.0.0.1 in front of the platform, on an asyncio loop in a thread.
    ``cut(i)`` closes station i's listener (new connections are refused) and resets its open connections;
    ``restore(i)`` listens again on the same port."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_port = target_port
        self.host = host
        self.ports: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict[int, asyncio.AbstractServer] = {}
        self._conns: dict[int, set] = {}

    def start(self, n: int) -> list[int]:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-links", daemon=True)
        self._thread.start()
        for i in range(n):
            self._conns[i] = set()
            self._call(self._listen(i, 0))
        return self.ports

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self, i: int, port: int) -> None:
        server = await asyncio.start_server(lambda r, w: self._pipe(i, r, w), self.host, port, reuse_address=True)
        self._servers[i] = server
        if port == 0:
            self.ports.append(server.sockets[0].getsockname()[1])

    async def _pipe(self, i: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:  # the platform is down: the station sees its connection closed
            writer.transport.abort()
            return
        pair = (writer, up_w)
        self._conns[i].add(pair)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(copy(reader, up_w), copy(up_r, writer))
        finally:
            self._conns[i].discard(pair)

    async def _cut(self, i: int) -> None:
        server = self._servers.pop(i, None)
        if server is not None:
            server.close()
        for down, up in list(self._conns[i]):
            down.transport.abort()  # RST to the station, as a pulled cable shows once anything is sent
            up.transport.abort()
        self._conns[i].clear()

    def cut(self, i: int) -> None:
        self._call(self._cut(i))

    def restore(self, i: int) -> None:
        if i not in self._servers:
            self._call(self._listen(i, self.ports[i]))

    def stop(self) -> None:
        if self._loop is None:
            return
        for i in list(self._servers):
            self._call(self._cut(i))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None


# ------------------------------------------------------------------------------------------- platform


class PlatformProcess:
    """``station serve-platform`` as its own process on 127.0.0.1:``port``."""

    def __init__(self, database_url: str, port: int, log_path: Path) -> None:
        self.database_url = database_url
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        import httpx

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "station.cli", "serve-platform", "--database-url", self.database_url,
                 "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent())
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise FleetError(f"the platform exited at start (rc {self.proc.returncode}): "
                                 f"{_tail(self.log_path)}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise FleetError(f"the platform did not answer on {self.url} in {timeout_s:.0f} s")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "no log"


def _free_port() -> int:
    from station.server.runner import free_port

    return free_port()


# ------------------------------------------------------------------------------------------- station worker


def fleet_record(run: str, station_id: str, i: int, sha: str):
    from station.domain import Decision, Disposition, Grade, LiabilityShare, Party, ReturnReason, ReturnRequest
    from station.records import record_from_parts

    reasons = list(ReturnReason)
    rng = random.Random(f"{station_id}-{i}")
    brand_share = round(rng.choice((0.0, 0.25, 0.5, 0.7, 1.0)), 2)
    rest = round(1.0 - brand_share, 2)
    shares = [LiabilityShare(Party.BRAND, brand_share, "L-FLEET", "fleet")]
    if rest:
        shares.append(LiabilityShare(rng.choice((Party.STREAMER, Party.CARRIER, Party.CONSUMER)), rest, "L-FLEET",
                                     "fleet"))
    dec = Decision(Grade.B, Disposition.OPEN_BOX, tuple(shares), False, ("G-FLEET",), ("fleet record",), 0.9)
    req = ReturnRequest(f"{run}-{station_id}-{i:05d}", "GAD-EARBUD-X2", reasons[rng.randrange(len(reasons))],
                        f"U-{station_id}-{i}", "live", f"{run}-streamer-{rng.randrange(7)}",
                        f"{run}-brand-{rng.randrange(5)}", "carrier-1")
    return record_from_parts(req, [], dec, 2, [("front", sha)], "fleet-model", station_id, {"record": 1.0}, "bench")


def fleet_image(i: int, station_index: int):
    import numpy as np

    img = np.empty((96, 128, 3), np.uint8)
    img[:] = ((station_index * 37) % 200 + 30, (i * 11) % 200 + 30, 120)
    x, y = (i * 7) % 100, (i // 20) % 70
    img[y:y + 24, x:x + 24] = (i % 256, (i // 256) % 256, 255 - i % 256)
    return img


def _inspect(store, run: str, station_id: str, station_index: int, start: int, stop: int,
             pause_s: float = 0.0) -> None:
    from station.domain import Grade

    for i in range(start, stop):
        rec = fleet_record(run, station_id, i, store.put_image(fleet_image(i, station_index)).sha256)
        store.append(rec)
        if i % OVERRIDE_EVERY == OVERRIDE_EVERY - 1:
            store.override(rec.record_id, "fleet-supervisor", "re-checked on the bench", grade=Grade.C)
        if pause_s:
            time.sleep(pause_s)


def worker_main(args: argparse.Namespace) -> int:
    """One station: inspect most records, say "ready", wait for "go", then sync while inspecting the rest;
    writes its stats (batch latencies, failed attempts) to ``--stats`` when everything is acknowledged."""
    from station.records import StationStore
    from station.sync import SyncClient, SyncError, SyncSettings, backoff_delay

    db = Path(args.data_dir) / "station.db"
    store = StationStore(db).open()
    prefill = int(args.records * PREFILL_SHARE)
    _inspect(store, args.run, args.station_id, args.index, 0, prefill)
    sync_store = StationStore(db).open()  # the sync client's own connection, as in the station
    settings = SyncSettings(url=args.url, token=os.environ[TOKEN_ENV], batch_size=args.batch_size, pull=False,
                            timeout_s=30.0)
    client = SyncClient(sync_store, settings)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    inspecting = threading.Event()
    inspecting.set()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rng = random.Random(args.index)

    def sync_loop() -> None:
        failures = 0
        while True:
            t0 = time.perf_counter()
            try:
                res = client.push_batch()
            except SyncError as exc:
                failures += 1
                key = str(exc).split(":")[0][:80]
                errors[key] = errors.get(key, 0) + 1
                time.sleep(backoff_delay(failures, 0.1, 2.0, rng))
                continue
            failures = 0
            if res["pushed"]:
                latencies.append(time.perf_counter() - t0)
            elif not inspecting.is_set() and sync_store.pending_count() == 0:
                return
            else:
                time.sleep(0.05)

    th = threading.Thread(target=sync_loop, name="fleet-sync", daemon=True)
    th.start()
    live = args.records - prefill
    _inspect(store, args.run, args.station_id, args.index, prefill, args.records,
             pause_s=args.live_seconds / live if live else 0.0)
    inspecting.clear()
    th.join()
    done = time.time()
    client.close()
    Path(args.stats).write_text(json.dumps({"station_id": args.station_id, "latencies_s": latencies,
                                            "failed_attempts": sum(errors.values()), "errors": errors,
                                            "done_at": done}))
    sync_store.close()
    store.close()
    print("done", flush=True)
    return 0


# ------------------------------------------------------------------------------------------- the run


def run_fleet(database_url: str, settings: FleetSettings, workdir: Path | None = None,
              progress=None) -> dict:
    """Run the fleet against the platform database ``database_url`` (migrated here; records of earlier runs
    there are left alone: everything is counted for this run's stations, brands and streamers only)."""
    import httpx
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from station.bench.stats import percentile
    from station.server.api import create_token, init_db, make_engine
    from station.server.models import Record

    say = progress or (lambda msg: None)
    n = settings.stations
    if n < 2:
        raise FleetError("a fleet needs at least 2 stations (one of them has its network cut)")
    run = f"f{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-fleet-", dir=workdir) as tmp:
        tmpd = Path(tmp)
        engine = make_engine(database_url)
        init_db(engine)
        sup = create_token(engine, "supervisor", f"{run}-sup")
        stations = [_Station(i, f"{run}-st{i:02d}", tmpd / f"station-{i:02d}",
                             create_token(engine, "station", f"{run}-st{i:02d}"), 0) for i in range(settings.stations)]
        platform = PlatformProcess(database_url, _free_port(), tmpd / "platform.log")
        links = StationLinks(platform.port)
        events: list[FleetEvent] = []
        try:
            platform.start()
            for st, port in zip(stations, links.start(len(stations))):
                st.port = port
            say(f"platform on {platform.url}; starting {len(stations)} stations")
            for st in stations:
                with open(tmpd / f"station-{st.index:02d}.log", "wb") as log:  # the child keeps its own copy
                    st.proc = subprocess.Popen(
                        [sys.executable, "-m", "station.bench.fleet", "worker", "--data-dir", str(st.data_dir),
                         "--station-id", st.station_id, "--index", str(st.index), "--run", run,
                         "--url", f"http://127.0.0.1:{st.port}",
                         "--records", str(settings.records), "--batch-size", str(settings.batch_size),
                         "--live-seconds", str(settings.live_seconds),
                         "--stats", str(tmpd / f"stats-{st.index:02d}.json")],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                        env={**os.environ, TOKEN_ENV: st.token},  # not on the command line (ps shows that)
                        preexec_fn=_die_with_parent())
            for st in stations:
                if st.proc.stdout.readline().strip() != "ready":
                    raise FleetError(f"station {st.station_id} failed before syncing: "
                                     f"{_tail(tmpd / f'station-{st.index:02d}.log')}")
            expected_total = settings.stations * (settings.records + settings.records // OVERRIDE_EVERY)
            say(f"stations inspected {int(settings.records * PREFILL_SHARE)} records each; go")
            go = time.time()
            for st in stations:
                st.proc.stdin.write("go\n")
                st.proc.stdin.flush()
            ids = [st.station_id for st in stations]

            def on_platform() -> int:
                try:
                    with Session(engine) as s:
                        return s.scalar(select(func.count()).select_from(Record)
                                        .where(Record.station_id.in_(ids))) or 0
                except Exception:  # noqa: BLE001 - a progress probe; the checks below are what count
                    return 0

            def event(name: str, detail: str = "") -> None:
                running = sum(st.proc.poll() is None for st in stations)
                events.append(FleetEvent(name, time.time() - go, on_platform() / expected_total, running,
                                         stations[0].proc.poll() is None, detail))
                say(f"{events[-1].at_s:6.2f} s  {name} ({events[-1].progress:.0%} on the platform) {detail}")

            cut = restarted = restored = False
            back_at = None
            while any(st.proc.poll() is None for st in stations):
                if time.time() - go > settings.deadline_s:
                    raise FleetError(f"the fleet did not finish in {settings.deadline_s:.0f} s")
                share = on_platform() / expected_total
                elapsed = time.time() - go
                # Station 0 cannot finish before its live inspections are done (live_seconds), so a cut by
                # then is mid-run for it; the fleet cannot finish while station 0 is cut, so the restart,
                # which comes after the cut, and the restore are mid-run too.
                if not cut and (share >= settings.cut_at or elapsed >= settings.live_seconds * 0.5):
                    links.cut(0)
                    cut = True
                    event("network cut", stations[0].station_id)
                elif cut and not restarted and share >= settings.restart_at * (n - 1) / n:  # without station 0
                    event("platform killed", "SIGKILL")
                    platform.kill()
                    platform.start()
                    restarted = True
                    back_at = time.time()
                    event("platform restarted")
                elif restarted and not restored and time.time() - back_at >= settings.restore_after_s:
                    links.restore(0)
                    restored = True
                    event("network restored", stations[0].station_id)
                time.sleep(0.1)
            if not restored:
                links.restore(0)
            failed = [st for st in stations if st.proc.returncode != 0]
            if failed:
                raise FleetError(f"station {failed[0].station_id} exited with {failed[0].proc.returncode}: "
                                 f"{_tail(tmpd / f'station-{failed[0].index:02d}.log')}")
            for st in stations:
                st.stats = json.loads((tmpd / f"stats-{st.index:02d}.json").read_text())
            synced_s = max(st.stats["done_at"] for st in stations) - go
            say(f"all stations synced in {synced_s:.2f} s; checking")
            checks = [check_station(st.station_id, st.data_dir, engine) for st in stations]
            with httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {sup}"}, timeout=60) as c:
                agg = {"brands": c.get("/api/v1/aggregates/brands").json()["brands"],
                       "streamers": c.get("/api/v1/aggregates/streamers").json()["streamers"]}
        finally:
            for st in stations:
                if st.proc is not None and st.proc.poll() is None:
                    st.proc.kill()
                    st.proc.wait()
            links.stop()
            platform.stop()
            engine.dispose()
    mismatches = aggregate_mismatches(expected_aggregates([c.pop("rows") for c in checks]), agg, run)
    latencies = [x for st in stations for x in st.stats["latencies_s"]]
    total = sum(c["records"] for c in checks)
    names = [e.name for e in events]
    return {
        "database": "postgresql" if database_url.startswith("postgresql") else database_url.split(":")[0],
        "stations": settings.stations, "records_per_station": settings.records, "batch_size": settings.batch_size,
        "records": total, "seconds": round(synced_s, 3), "records_per_s": round(total / synced_s, 1),
        "batches": len(latencies),
        "batch_latency_ms": {"p50": round(percentile(latencies, 0.5) * 1000, 1),
                             "p95": round(percentile(latencies, 0.95) * 1000, 1),
                             "max": round(max(latencies, default=float("nan")) * 1000, 1)},
        "failed_attempts": sum(st.stats["failed_attempts"] for st in stations),
        "heads_refused_then_proven": sum(c["heads_refused_then_proven"] for c in checks),
        "lost": sum(c["lost"] for c in checks), "duplicated": sum(c["duplicated"] for c in checks),
        "heads_consistent": all(c["heads_consistent"] for c in checks),
        "aggregates_equal": not mismatches, "aggregate_mismatches": mismatches[:10],
        "events": [e.to_json() for e in events],
        "faults_mid_run": names == ["network cut", "platform killed", "platform restarted", "network restored"]
        and all(e.station0_running and e.progress < 1 for e in events),
        "stations_detail": checks,
    }


def fleet_ok(report: dict) -> bool:
    return (report["lost"] == 0 and report["duplicated"] == 0 and report["heads_consistent"]
            and report["aggregates_equal"] and report["faults_mid_run"])


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m station.bench.fleet", description="fleet benchmark station worker")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    for name in ("--data-dir", "--station-id", "--run", "--url", "--stats"):
        w.add_argument(name, required=True)
    w.add_argument("--index", type=int, required=True)
    w.add_argument("--records", type=int, required=True)
    w.add_argument("--batch-size", type=int, default=50)
    w.add_argument("--live-seconds", type=float, default=4.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(worker_main(_parse(sys.argv[1:])))
