"""The fleet benchmark (issue 21, "The fleet"), small: 3 real station processes x 20 inspections sync to one
platform process on SQLite and on PostgreSQL, with the platform killed and restarted and one station's
network cut and restored mid-run; nothing lost, nothing duplicated, every head consistent, aggregates equal
to the sum of the stations. And the checks themselves catch a lost record, a duplicate and a wrong aggregate."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading

import httpx
import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from station.bench.fleet import (
    OVERRIDE_EVERY,
    FleetSettings,
    StationLinks,
    fleet_image,
    fleet_ok,
    fleet_record,
    run_fleet,
)
from station.bench.fleet_checks import aggregate_mismatches, check_station, expected_aggregates
from station.domain import Grade
from station.evidence import all_leaves, merkle_root
from station.records import StationStore
from station.server.api import create_app, create_token, init_db, make_engine
from station.server.models import Record, RecordConflict, RecordImage, TreeHeadConflict
from station.server.runner import ServerThread
from station.sync import SyncClient, SyncSettings, wait_until_synced
from tests.postgres_support import BACKENDS, backend_url, postgres_server  # noqa: F401 - a fixture
from tests.test_server_api import make_record


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    return backend_url(request, tmp_path)


def test_a_small_fleet_survives_a_platform_restart_and_a_network_cut(db_url, tmp_path):
    settings = FleetSettings(stations=3, records=20, batch_size=5, live_seconds=2.0)
    report = run_fleet(db_url, settings, workdir=tmp_path)
    assert report["records"] == 3 * (20 + 20 // OVERRIDE_EVERY)
    assert report["lost"] == 0 and report["duplicated"] == 0, report["stations_detail"]
    assert report["heads_consistent"], [s["problems"] for s in report["stations_detail"]]
    assert report["aggregates_equal"], report["aggregate_mismatches"]
    assert [e["event"] for e in report["events"]] == ["network cut", "platform killed", "platform restarted",
                                                      "network restored"]
    assert report["faults_mid_run"] and all(e["progress"] < 1 for e in report["events"][:2])
    assert report["failed_attempts"] > 0  # the faults were felt, and retried
    assert all(s["on_platform"] == s["records"] and s["heads_witnessed"] >= 1 for s in report["stations_detail"])
    assert report["batches"] > 0 and report["batch_latency_ms"]["p95"] >= report["batch_latency_ms"]["p50"] > 0
    assert fleet_ok(report)


def _synced_station(tmp_path, engine, url: str, n: int = 6):
    """A real station store with n inspections (one overridden) pushed by the real sync client."""
    data_dir = tmp_path / "st"
    store = StationStore(data_dir / "station.db").open()
    recs = []
    for i in range(n):
        rec = fleet_record("fx", "fx-st00", i, store.put_image(fleet_image(i, 0)).sha256)
        store.append(rec)
        recs.append(rec)
    store.override(recs[0].record_id, "sup", "re-checked", grade=Grade.C)
    client = SyncClient(store, SyncSettings(url=url, token=create_token(engine, "station", "fx-st00"), pull=False))
    assert wait_until_synced(client, 60)
    client.close()
    store.close()
    return data_dir, recs


def test_the_checks_catch_a_lost_record_a_duplicate_and_a_wrong_aggregate(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'platform.db'}")
    init_db(engine)
    with ServerThread(create_app(engine=engine)) as srv:
        data_dir, recs = _synced_station(tmp_path, engine, srv.url)
        good = check_station("fx-st00", data_dir, engine)
        assert (good["lost"], good["duplicated"], good["heads_consistent"]) == (0, 0, True)
        assert good["records"] == good["on_platform"] == 7
        sup = create_token(engine, "supervisor", "sue")
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {sup}"}) as c:
            agg = {"brands": c.get("/api/v1/aggregates/brands").json()["brands"],
                   "streamers": c.get("/api/v1/aggregates/streamers").json()["streamers"]}
    want = expected_aggregates([good["rows"]])
    assert aggregate_mismatches(want, agg, "fx") == []
    assert sum(g["inspections"] for g in want["brands"].values()) == 6  # the override replaced its record
    wrong = json.loads(json.dumps(agg))
    wrong["brands"][0]["inspections"] += 1
    assert aggregate_mismatches(want, wrong, "fx")

    with Session(engine) as s, s.begin():  # the platform loses one record and keeps a second version of another
        s.execute(delete(RecordImage).where(RecordImage.record_id == recs[3].record_id))
        s.execute(delete(Record).where(Record.record_id == recs[3].record_id))
        s.execute(insert(RecordConflict).values(record_id=recs[4].record_id, station_id="fx-st00",
                                                payload_json="{}", received_at="now"))
        assert s.scalar(select(Record.record_id).where(Record.record_id == recs[3].record_id)) is None
    bad = check_station("fx-st00", data_dir, engine)
    assert bad["lost"] == 1 and bad["duplicated"] == 1

    # a refused head that is a root of the station's log was a retry for want of a proof; one that is not, a fork
    with StationStore(data_dir / "station.db") as store:
        leaves = all_leaves(store.db)
    conflict = {"station_id": "fx-st00", "signed_at": "t", "key_id": "k", "signature": "s", "last_tree_size": 1,
                "last_root_hash": "0" * 64, "reason": "r", "received_at": "now"}
    with Session(engine) as s, s.begin():
        s.execute(insert(TreeHeadConflict).values(tree_size=3, root_hash=merkle_root(leaves[:3]).hex(), **conflict))
    retried = check_station("fx-st00", data_dir, engine)
    assert retried["heads_refused_then_proven"] == 1 and retried["heads_consistent"]
    with Session(engine) as s, s.begin():
        s.execute(insert(TreeHeadConflict).values(tree_size=3, root_hash="f" * 64, **conflict))
    forked = check_station("fx-st00", data_dir, engine)
    assert not forked["heads_consistent"] and "not a root" in forked["problems"][0]
    engine.dispose()


def test_a_cut_link_refuses_connections_until_restored():
    with ServerThread(create_app("sqlite://")) as srv:  # nothing is read: the proxy only forwards bytes
        links = StationLinks(srv.port)
        (port,) = links.start(1)
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"ok": True}
            links.cut(0)
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            links.restore(0)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"ok": True}
        finally:
            links.stop()


def test_bench_fleet_refuses_a_database_that_is_not_postgresql(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "station.cli", "bench", "fleet", "--postgres-url",
                           f"sqlite:///{tmp_path / 'p.db'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "PostgreSQL URL" in proc.stderr and "Traceback" not in proc.stderr


def test_two_platform_processes_on_one_database_never_answer_a_retried_push_with_409(db_url):
    # A fleet's platform runs several processes on one database. A station that retries a batch (its reply
    # was lost) may reach another process while the first is still storing it: both must answer 200 and the
    # records be stored once, never a 409 from a primary key both processes found free. 20 rounds, each
    # released at once through a barrier, lose that race often without the platform's advisory locks.
    engines = [make_engine(db_url), make_engine(db_url)]
    init_db(engines[0])
    token = create_token(engines[0], "station", "st-1")
    data = b"\x89PNG shared"
    sha = hashlib.sha256(data).hexdigest()
    image = {"images": [{"sha256": sha, "data_b64": base64.b64encode(data).decode()}]}
    with ServerThread(create_app(engine=engines[0])) as a, ServerThread(create_app(engine=engines[1])) as b:
        clients = [httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
                   for srv in (a, b)]
        for round_ in range(20):
            batch = {"records": [make_record(round_ * 100 + i) for i in range(20)]}
            barrier, answers = threading.Barrier(2), {}

            def push(k: int) -> None:
                barrier.wait()
                answers[k] = clients[k].post("/api/v1/records/batch", json=batch)
                answers[k + 2] = clients[k].post("/api/v1/images/batch", json=image)

            threads = [threading.Thread(target=push, args=(k,)) for k in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(answers) == [0, 1, 2, 3]
            assert [answers[k].status_code for k in range(4)] == [200] * 4, [answers[k].text for k in range(4)]
            assert answers[0].json()["created"] + answers[1].json()["created"] == 20
        for c in clients:
            c.close()
    with Session(engines[0]) as s:
        assert s.scalar(select(func.count()).select_from(Record)) == 400
    for e in engines:
        e.dispose()


def test_a_throwaway_cluster_serves_fresh_databases_and_leaves_nothing_behind():
    from station.server.pgcluster import PostgresUnavailable, ThrowawayPostgres, unavailable_reason

    if unavailable_reason():
        pytest.skip(f"no throwaway PostgreSQL here: {unavailable_reason()}")
    cluster = ThrowawayPostgres(durable=False)
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no throwaway PostgreSQL here: {exc}")
    root = cluster.root
    try:
        engine = make_engine(cluster.create_database())
        assert init_db(engine) is not None and create_token(engine, "station", "st-1")
        engine.dispose()
        with pytest.raises(ValueError, match="database name"):
            cluster.create_database('x"; DROP DATABASE postgres; --')
    finally:
        cluster.stop()
    assert not cluster.running and not root.exists()
