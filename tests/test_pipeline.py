"""The whole pipeline on built-in defaults: real model, real SQLite, simulated camera and conveyor."""

from __future__ import annotations

import sqlite3

import pytest

from station.app import boot
from station.config import StationConfig
from station.domain import Disposition, Grade, ReturnReason, ReturnRequest
from station.records import StoreError
from vision.camera import StagedItem
from vision.catalogue import UnknownSkuError


@pytest.fixture()
def station(data_dir):
    cfg = StationConfig.model_validate({"station": {"data_dir": str(data_dir)}})
    st = boot(cfg)
    yield st
    st.close()


def run(station, request, staged):
    station.camera.stage(staged)
    frames = [station.camera.capture(v) for v in station.config.station.views]
    return station.pipeline.inspect(request, frames, operator="test")


def req(order, sku, reason=ReturnReason.NO_REASON_7DAY, unit="U1"):
    return ReturnRequest(order, sku, reason, unit_code=unit, brand="b")


def test_swap_is_caught_and_sent_to_review(station):
    res = run(station, req("o1", "HH-KETTLE-1L", ReturnReason.QUALITY_ISSUE), StagedItem("GAD-EARBUD-X2", {}, 1))
    d = res.record.decision
    assert any(f.kind == "wrong_item" for f in res.findings)
    assert d.review and d.disposition == Disposition.MANUAL_REVIEW
    assert d.liability[0].party.value == "consumer" and d.liability[0].rule == "L-SWAP"
    assert res.record.lane == station.config.lanes[Disposition.MANUAL_REVIEW]
    assert station.conveyor.diverts[-1].lane == res.record.lane


def test_genuine_item_passes_identity_and_colour(station):
    res = run(station, req("o2", "APP-TEE-M"), StagedItem("APP-TEE-M", {}, 2))
    assert res.comparison.identity_score >= 0.9
    assert res.comparison.delta_e00 is not None and res.comparison.delta_e00 < 2.0
    assert not any(f.kind in ("wrong_item", "colour_mismatch") for f in res.findings)


def test_unit_seen_before_is_never_graded_a(station):
    first = run(station, req("o3", "GAD-SPEAKER-M", unit="UX"), StagedItem("GAD-SPEAKER-M", {}, 3))
    second = run(station, req("o4", "GAD-SPEAKER-M", unit="UX"), StagedItem("GAD-SPEAKER-M", {}, 3))
    assert not first.unit_seen_before and second.unit_seen_before
    assert second.record.decision.grade != Grade.A
    assert "CAT-UNIT-SEEN-BEFORE" in second.record.decision.rules_fired


def test_records_are_append_only_and_overrides_point_back(station):
    res = run(station, req("o5", "TOY-BEAR-S"), StagedItem("TOY-BEAR-S", {}, 4))
    store = station.store
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE inspections SET grade='A'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM inspections")
    new_id = store.override(res.record.record_id, "sup-1", "regraded after manual check", grade=Grade.C,
                            disposition=Disposition.REFURBISH)
    rows = list(store.rows("WHERE order_id = ?", ("o5",)))
    assert [r["record_id"] for r in rows] == [res.record.record_id, new_id]
    assert rows[0]["grade"] == res.record.decision.grade.value  # the original is untouched
    assert rows[1]["overrides"] == res.record.record_id and rows[1]["operator"] == "sup-1"
    assert rows[1]["grade"] == "C" and rows[1]["override_reason"] == "regraded after manual check"
    with pytest.raises(StoreError, match="who"):
        store.override(res.record.record_id, "", "")


def test_images_stored_by_content_hash(station):
    import hashlib

    res = run(station, req("o6", "APP-TEE-M"), StagedItem("APP-TEE-M", {"front": ("stain",)}, 5))
    assert len(res.record.image_hashes) == len(station.config.station.views)
    for _, sha in res.record.image_hashes:
        path = station.store.image_path(sha)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha


def test_unknown_sku_writes_nothing(station):
    station.camera.stage(StagedItem("APP-TEE-M", {}, 6))
    frames = [station.camera.capture("front")]
    with pytest.raises(UnknownSkuError):
        station.pipeline.inspect(req("o7", "NOT-A-SKU"), frames)
    assert station.store.count() == 0


def test_every_stage_is_timed(station):
    res = run(station, req("o8", "BTL-FEED-240"), StagedItem("BTL-FEED-240", {}, 7))
    assert set(res.record.timings_ms) == {"quality", "detect", "compare", "history", "rules", "record", "route"}


def test_restocked_returns_grow_the_skus_good_appearance_and_questioned_ones_do_not(station, data_dir):
    unseen = station.pipeline.comparer.unseen
    assert unseen is not None  # on by default
    res = run(station, req("o9", "APP-TEE-M", unit="U9"), StagedItem("APP-TEE-M", {}, 2))
    assert res.record.decision.disposition == Disposition.RESTOCK and not res.findings
    assert "anomaly" in res.comparison.details
    learnt = list((data_dir / "good_appearance").rglob("*.npy"))
    assert len(learnt) == len(station.config.station.views)
    swapped = run(station, req("o10", "HH-KETTLE-1L", ReturnReason.QUALITY_ISSUE, unit="U10"),
                  StagedItem("GAD-EARBUD-X2", {}, 1))
    assert swapped.record.decision.review
    assert len(list((data_dir / "good_appearance").rglob("*.npy"))) == len(learnt)
