"""The comparison's measurements (identity score, ΔE00, best-match SKU) are stored with every record, through
the real pipeline on built-in defaults, even when no finding fired; they are inside decision_json, so the
evidence log covers them and an override keeps them."""

from __future__ import annotations

import json

import pytest

from station.app import boot
from station.config import StationConfig
from station.domain import Grade, ReturnReason, ReturnRequest
from station.records import measurements_of
from vision.camera import StagedItem


@pytest.fixture()
def station(data_dir):
    st = boot(StationConfig.model_validate({"station": {"data_dir": str(data_dir)}}))
    yield st
    st.close()


def inspect(station, order: str, claimed: str, staged: StagedItem, reason=ReturnReason.NO_REASON_7DAY):
    station.camera.stage(staged)
    frames = [station.camera.capture(v) for v in station.config.station.views]
    return station.pipeline.inspect(ReturnRequest(order, claimed, reason, unit_code=f"U-{order}", brand="b"),
                                     frames, operator="test")


def test_a_clean_genuine_item_keeps_its_measurements_without_any_finding(station):
    res = inspect(station, "m1", "APP-TEE-M", StagedItem("APP-TEE-M", {}, 2))
    row = station.store.get(res.record.record_id)
    stored = measurements_of(row)
    assert not any(f["kind"] in ("wrong_item", "colour_mismatch") for f in json.loads(row["findings_json"]))
    stored = dict(stored)
    anomaly = stored.pop("anomaly")  # each view against the SKU's good appearance, with its calibration
    assert {a["view"] for a in anomaly} == set(station.config.station.views)
    assert all(a["calibration"]["source"] == "none" and a["regions"] == [] for a in anomaly)
    codes = stored.pop("marketplace")  # how the marketplaces name this grade: an opened grade A is not "New"
    assert codes["ebay_condition_id"] == 1500 and codes["amazon_condition"] == "Used - Like New"
    assert stored == {"identity_score": round(res.comparison.identity_score, 4),
                      "delta_e00": round(res.comparison.delta_e00, 3), "best_match_sku": "APP-TEE-M"}
    assert stored["identity_score"] >= 0.9 and stored["delta_e00"] < 2.0
    assert res.record.measurements == {**stored, "anomaly": anomaly, "marketplace": codes}
    assert station.store.verify().ok  # decision_json, measurements included, is what the log sealed


def test_a_swap_records_the_sku_it_looks_like(station):
    res = inspect(station, "m2", "HH-KETTLE-1L", StagedItem("GAD-EARBUD-X2", {}, 1), ReturnReason.QUALITY_ISSUE)
    stored = measurements_of(station.store.get(res.record.record_id))
    assert stored["best_match_sku"] == "GAD-EARBUD-X2"
    assert stored["identity_score"] == round(res.comparison.identity_score, 4) < 0.9


def test_an_override_keeps_the_measurements_and_altering_them_is_detected(station):
    res = inspect(station, "m3", "TOY-BEAR-S", StagedItem("TOY-BEAR-S", {}, 4))
    original = measurements_of(station.store.get(res.record.record_id))
    new_id = station.store.override(res.record.record_id, "sup-1", "checked by hand", grade=Grade.B)
    assert measurements_of(station.store.get(new_id)) == original
    assert station.store.verify().ok
    # Bypass the append-only trigger the way an attacker with the file would, and change one measurement.
    db = station.store.db
    db.execute("DROP TRIGGER inspections_no_update")
    tampered = json.loads(station.store.get(res.record.record_id)["decision_json"])
    tampered["measurements"]["identity_score"] = 0.5
    db.execute("UPDATE inspections SET decision_json = ? WHERE record_id = ?",
               (json.dumps(tampered), res.record.record_id))
    report = station.store.verify()
    assert not report.ok and any(res.record.record_id in p for p in report.problems)
