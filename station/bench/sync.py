"""`station bench sync`: N records (one image each) synced to a local platform; the bench records and images
the crash bench (station.bench.crash) uses too."""

import tempfile
import time
from pathlib import Path


def bench_record(i: int, sha: str, station_id: str, order_prefix: str = "BENCH"):
    from station.domain import Decision, Disposition, Grade, LiabilityShare, Party, ReturnReason, ReturnRequest
    from station.records import record_from_parts

    reasons = list(ReturnReason)
    dec = Decision(Grade.B, Disposition.OPEN_BOX,
                   (LiabilityShare(Party.BRAND, 0.5, "L-BENCH", "bench"), LiabilityShare(Party.STREAMER, 0.5, "L-BENCH",
                                                                                         "bench")),
                   False, ("G-BENCH",), ("bench record",), 0.9)
    req = ReturnRequest(f"{order_prefix}-{i:05d}", "GAD-EARBUD-X2", reasons[i % len(reasons)], f"U-{i}", "live",
                        f"streamer-{i % 7}", f"brand-{i % 5}", "carrier-1")
    return record_from_parts(req, [], dec, 2, [("front", sha)], "bench-model", station_id, {"record": 1.0}, "bench")


def bench_image(rng, i: int):
    import numpy as np

    img = np.empty((120, 160, 3), np.uint8)
    img[:] = rng.integers(40, 220, 3, dtype=np.uint8)
    x, y = (i * 7) % 140, (i // 20) % 100
    img[y:y + 20, x:x + 20] = (i % 256, (i // 256) % 256, 255 - i % 256)
    return img


def fill_store(dirpath: Path, n: int):
    import numpy as np

    from station.records import StationStore

    store = StationStore(dirpath / "station.db").open()
    rng = np.random.default_rng(0)
    batch = []
    for i in range(n):
        sha = store.put_image(bench_image(rng, i)).sha256
        batch.append(bench_record(i, sha, "bench-station"))
        if len(batch) == 500:
            store.append_many(batch)
            batch = []
    store.append_many(batch)
    return store


def run_sync_bench(records: int, batch_size: int) -> tuple[dict, float]:
    """Fill a station with ``records`` records and sync them to a platform on a local server: the report
    (records/s, on the server, thumbnails, complete) and the sync's seconds, unrounded (the CLI prints them)."""
    from station.server.api import create_app, create_token, init_db, make_engine
    from station.server.runner import ServerThread
    from station.sync import SyncClient, SyncSettings, wait_until_synced

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        tmpd = Path(tmp)
        t0 = time.perf_counter()
        store = fill_store(tmpd / "station", records)
        setup_s = time.perf_counter() - t0
        engine = make_engine(f"sqlite:///{tmpd / 'platform.db'}")
        init_db(engine)
        tok = create_token(engine, "station", "bench-station")
        with ServerThread(create_app(engine=engine)) as srv:
            client = SyncClient(store, SyncSettings(url=srv.url, token=tok, batch_size=batch_size, pull=False))
            t1 = time.perf_counter()
            done = wait_until_synced(client, deadline_s=600)
            seconds = time.perf_counter() - t1
            client.close()
        from sqlalchemy import func, select
        from sqlalchemy.orm import Session

        from station.server.models import Image, Record

        with Session(engine) as s:
            on_server = s.scalar(select(func.count()).select_from(Record))
            thumbs = s.scalar(select(func.count()).select_from(Image).where(Image.thumbnail.is_not(None)))
        store.close()
        engine.dispose()
    report = {"records": records, "seconds": round(seconds, 3), "records_per_s": round(records / seconds, 1),
              "on_server": on_server, "thumbnails_on_server": thumbs, "complete": done,
              "setup_seconds": round(setup_s, 2)}
    return report, seconds
