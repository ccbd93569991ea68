"""Sync wired into the running station: a station booted with ``sync.url`` pointing at a real platform on
127.0.0.1 syncs an inspection without anyone calling sync, prunes synced images to ``records.image_budget_mb``
and stops its sync thread on close; without ``sync.url`` it starts nothing; ``records.min_free_mb`` reaches
the store."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from station.app import boot
from station.config import StationConfig
from station.domain import ReturnReason, ReturnRequest
from station.records import StoreError
from station.server.api import create_app, create_token, init_db, make_engine
from station.server.models import Image, Record
from station.server.runner import ServerThread
from vision.camera import StagedItem


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "station-sync" and t.is_alive()]


def wait_for(condition, deadline_s: float = 60.0):
    """Poll until ``condition()`` is truthy; the deadline only bounds a failing run."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    return condition()


def inspect(station, order: str, sku: str, seed: int):
    station.camera.stage(StagedItem(sku, {}, seed))
    frames = [station.camera.capture(v) for v in station.config.station.views]
    return station.pipeline.inspect(ReturnRequest(order, sku, ReturnReason.NO_REASON_7DAY, unit_code=f"U-{order}",
                                                  brand="b"), frames, operator="test")


@pytest.fixture()
def platform(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'platform.db'}")
    init_db(engine)
    token = create_token(engine, "station", "st-sync")
    with ServerThread(create_app(engine=engine)) as srv:
        yield srv, engine, token
    engine.dispose()


def config(data_dir, **sections) -> StationConfig:
    return StationConfig.model_validate({"station": {"id": "st-sync", "data_dir": str(data_dir)}, **sections})


def test_a_booted_station_syncs_an_inspection_by_itself_and_prunes_to_its_budget(platform, data_dir, monkeypatch):
    srv, engine, token = platform
    monkeypatch.delenv("STATION_SYNC_TOKEN", raising=False)
    cfg = config(data_dir, sync={"url": srv.url, "token": token, "interval_s": 0.2},
                 records={"image_budget_mb": 0.001})  # ~1 KB: every synced image is over it
    station = boot(cfg)
    try:
        assert station.sync is not None and len(sync_threads()) == 1
        res = inspect(station, "auto-1", "APP-TEE-M", 2)
        rid = res.record.record_id

        def on_platform():
            with Session(engine) as s:
                return s.get(Record, rid)

        rec = wait_for(on_platform)
        assert rec is not None and rec.station_id == "st-sync" and rec.order_id == "auto-1"
        assert json.loads(rec.decision_json)["measurements"]["best_match_sku"] == "APP-TEE-M"
        assert wait_for(lambda: station.store.pending_count() == 0)
        shas = [sha for _, sha in res.record.image_hashes]
        with Session(engine) as s:  # the full images reached the platform ...
            assert {i.sha256 for i in s.scalars(select(Image).where(Image.sha256.in_(shas)))
                    if i.data is not None} == set(shas)
        paths = [station.store.image_path(sha) for sha in shas]
        assert wait_for(lambda: not any(p.exists() for p in paths))  # ... so the station pruned them
        assert station.store.verify().ok  # pruned images are accounted for, the log still verifies
    finally:
        station.close()
    assert station.sync is None and sync_threads() == []


def test_boot_without_sync_url_starts_nothing(data_dir):
    station = boot(config(data_dir))
    try:
        assert station.sync is None and sync_threads() == []
        inspect(station, "off-1", "TOY-BEAR-S", 4)
        assert station.store.pending_count() == 1  # kept in the outbox for a later sync
    finally:
        station.close()


def test_sync_url_without_a_token_keeps_inspecting_and_says_why(data_dir, monkeypatch):
    monkeypatch.delenv("STATION_SYNC_TOKEN", raising=False)
    station = boot(config(data_dir, sync={"url": "http://127.0.0.1:9"}))
    try:
        assert station.sync is None and sync_threads() == []
        assert "no sync token" in station.store.get_state("last_error")
        inspect(station, "tok-1", "TOY-BEAR-S", 4)
        assert station.store.count() == 1
    finally:
        station.close()


def test_min_free_mb_reaches_the_store(data_dir):
    station = boot(config(data_dir, records={"min_free_mb": 1e12}))  # more than any disk has free
    try:
        with pytest.raises(StoreError, match="disk full"):
            inspect(station, "full-1", "TOY-BEAR-S", 4)
        assert station.store.count() == 0
    finally:
        station.close()
