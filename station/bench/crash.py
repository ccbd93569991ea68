"""`station bench crash`: a process that inspects and syncs is killed with SIGKILL at random moments and restarted;
every inspection must be on the station and on the platform exactly once and the evidence log must verify.
The worker is `station crash-worker` (hidden), run as ``python -m station.cli crash-worker``."""

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from station.bench.sync import bench_image, bench_record


def crash_worker(db: Path, url: str, token: str, total: int) -> None:
    import threading

    import numpy as np

    from station.records import StationStore
    from station.sync import SyncClient, SyncError, SyncSettings

    store = StationStore(db).open()
    sync_store = StationStore(db).open()
    client = SyncClient(sync_store, SyncSettings(url=url, token=token, batch_size=7, pull=False, timeout_s=5))
    stop = threading.Event()

    def syncer() -> None:
        while not stop.is_set():
            try:
                client.sync_once()
            except SyncError:
                pass
            stop.wait(0.005)

    th = threading.Thread(target=syncer, daemon=True)
    th.start()
    print("ready", flush=True)
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    done = {r[0] for r in store.db.execute("SELECT order_id FROM inspections WHERE order_id LIKE 'CRASH-%'")}
    for i in range(total):
        if f"CRASH-{i:05d}" in done:
            continue
        sha = store.put_image(bench_image(rng, i)).sha256
        store.append(bench_record(i, sha, "crash-station", "CRASH"))
        time.sleep(rng.uniform(0, 0.02))  # items arrive spaced, as on a line
    stop.set()
    th.join()
    while sync_store.pending_count():
        try:
            client.sync_once()
        except SyncError:
            time.sleep(0.05)
    print("done", flush=True)


def run_crash_bench(trials: int, per_trial: int, seed: int) -> dict:
    """The crash test: returns {"trials", "inspections", "lost", "duplicated", "verify_ok", ...}."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from station.records import StationStore
    from station.server.api import create_app, create_token, init_db, make_engine
    from station.server.models import Record
    from station.server.runner import ServerThread

    rng = random.Random(seed)
    total = trials * per_trial
    kills = mid_run = 0
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        tmpd = Path(tmp)
        db = tmpd / "station" / "station.db"
        engine = make_engine(f"sqlite:///{tmpd / 'platform.db'}")
        init_db(engine)
        tok = create_token(engine, "station", "crash-station")
        with ServerThread(create_app(engine=engine)) as srv:
            from station.sync import TOKEN_ENV

            cmd = [sys.executable, "-m", "station.cli", "crash-worker", "--db", str(db), "--url", srv.url,
                   "--total", str(total)]
            env = {**os.environ, TOKEN_ENV: tok}  # not in argv: other users could read it there
            for _ in range(trials):
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
                line = proc.stdout.readline()  # "ready": the store is open and the syncer runs
                if line.strip() == "ready":
                    time.sleep(rng.uniform(0.0, 0.03 * per_trial))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    kills += 1
                proc.wait()
                proc.stdout.close()
                with StationStore(db) as probe:
                    n_done = probe.db.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
                    mid_run += int(n_done < total or probe.pending_count() > 0)
            # Final restart, not killed: finishes what is left and syncs everything.
            final = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        with StationStore(db) as store:
            counts = dict(store.db.execute(
                "SELECT order_id, COUNT(*) FROM inspections WHERE order_id LIKE 'CRASH-%' GROUP BY order_id"))
            report = store.verify()
            pending = store.pending_count()
        with Session(engine) as s:
            server_counts = dict(s.execute(select(Record.order_id, func.count()).where(
                Record.station_id == "crash-station").group_by(Record.order_id)).all())
        engine.dispose()
    expected = {f"CRASH-{i:05d}" for i in range(total)}
    lost = len(expected - set(counts)) + len(expected - set(server_counts))
    duplicated = sum(c - 1 for c in counts.values()) + sum(c - 1 for c in server_counts.values())
    return {"trials": trials, "kills": kills, "kills_before_all_synced": mid_run, "inspections": total, "on_station": len(counts),
            "on_server": len(server_counts), "lost": lost, "duplicated": duplicated, "pending": pending,
            "verify_ok": report.ok, "worker_rc": final.returncode,
            "problems": list(report.problems)[:5]}
