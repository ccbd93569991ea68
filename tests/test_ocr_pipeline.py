"""The OCR stage of the pipeline (issue 24): only SKUs whose catalogue row has serial_pattern or shelf_life_days
are read; a serial swap, an expired tin and a tin near its date are decided as the rules say, with the crop and
the text as evidence, recorded in the record's measurements and in `inspect --json`; what cannot be read goes to
a supervisor."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from datetime import date

import cv2
import pytest

from station.app import boot
from station.config import StationConfig
from station.demo import STORIES, print_label, simulated_returns
from station.domain import Disposition, Grade, Party, ReturnReason, ReturnRequest
from station.records import measurements_of
from vision.camera import StagedItem

EARBUDS, TIN, BEAR = "GAD-EARBUD-X2", "FORM-TIN-800", "TOY-BEAR-S"


@pytest.fixture(scope="module")
def station(tmp_path_factory, sample_catalogue_dir):
    root = tmp_path_factory.mktemp("ocr-station")
    shutil.copytree(sample_catalogue_dir, root / "data" / "sample_catalogue")
    station = boot(StationConfig.model_validate({"station": {"data_dir": str(root / "data")}}))
    station.pipeline.today = lambda: date(2026, 12, 4)  # the stories' dates are read against a fixed day
    yield station
    station.close()


_orders = iter(range(10_000))


def frames_of(station, staged, printed=None):
    station.camera.stage(staged)
    frames = [station.camera.capture(v) for v in station.config.station.views]
    return [dataclasses.replace(f, image=print_label(f.image, printed[f.view])) if printed and f.view in printed
            else f for f in frames]


def inspect(station, sku, frames, serial=None, reason=ReturnReason.NO_REASON_7DAY):
    n = next(_orders)
    request = ReturnRequest(f"T-{n}", sku, reason, unit_code=f"UT{n}", brand="b", serial=serial)
    return station.pipeline.inspect(request, frames, operator="test")


def stored_text(station, result) -> dict:
    row = next(iter(station.store.rows("WHERE record_id = ?", (result.record.record_id,))))
    return measurements_of(row).get("text")


def story(title):
    i = next(i for i, s in enumerate(STORIES) if s.title == title)
    return simulated_returns(len(STORIES), 0)[i]


@pytest.mark.parametrize("title, grade, disposition, rules, liable", [
    ("earbuds back with another unit's serial", Grade.D, Disposition.MANUAL_REVIEW,
     {"G-SERIAL-MISMATCH", "L-SERIAL-SWAP"}, Party.CONSUMER),
    ("formula tin past its date", Grade.D, Disposition.SCRAP, {"CAT-EXPIRED", "L-EXPIRED-SHIPPED"}, Party.BRAND),
])
def test_the_demo_text_stories_are_decided_as_told(station, title, grade, disposition, rules, liable):
    sim = story(title)
    station.camera.stage(sim.staged)
    frames = sim.printed_on([station.camera.capture(v) for v in station.config.station.views])
    res = station.pipeline.inspect(sim.request, frames, operator="test")
    d = res.record.decision
    assert (d.grade, d.disposition) == (grade, disposition) and rules <= set(d.rules_fired), d.reasons
    assert d.liability[0].party == liable and sim.mismatch(d) is None
    # the finding is the evidence: the view and box it was read in, the text as read
    text_finding = next(f for f in res.findings if f.kind in ("serial_mismatch", "expired"))
    assert text_finding.view == "front" and text_finding.box_xyxy is not None
    shown = sim.printed["front"][-1].split()[-1]
    assert shown in text_finding.detail
    evidence = d.liability[0].evidence
    assert any(text_finding.kind in e for e in evidence)
    # ... and the record keeps what was read (synced with the decision)
    stored = stored_text(station, res)
    assert stored == res.text and any(shown in t["text"] for t in stored["texts"])


def test_a_sku_without_text_is_never_read(station):
    res = inspect(station, BEAR, frames_of(station, StagedItem(BEAR, {}, 8)))
    assert res.text is None and stored_text(station, res) is None and res.to_json()["text"] is None
    assert not any(r.startswith("T-") for r in res.record.decision.rules_fired)
    assert "text" not in res.record.timings_ms  # nothing ran: no OCR time on the decision


def test_the_unit_the_order_shipped_passes(station):
    frames = frames_of(station, StagedItem(EARBUDS, {}, 1167425779), {"front": ("S/N: SB4K7M2P9X",)})
    res = inspect(station, EARBUDS, frames, serial="SB4K7M2P9X")
    d = res.record.decision
    assert (d.grade, d.disposition) == (Grade.A, Disposition.RESTOCK), d.reasons
    assert "T-SERIAL-MATCH" in d.rules_fired and res.text["serial_verdict"] == "match"


def test_an_unreadable_serial_goes_to_a_supervisor(station):
    res = inspect(station, EARBUDS, frames_of(station, StagedItem(EARBUDS, {}, 1167425779)), serial="SB4K7M2P9X")
    d = res.record.decision
    assert d.disposition == Disposition.MANUAL_REVIEW and d.proposed_disposition == Disposition.RESTOCK
    assert "T-SERIAL-UNREAD" in d.rules_fired and res.text["serial_verdict"] == "unread"


def test_a_tin_near_its_date_goes_back_to_the_vendor_and_one_without_a_date_to_a_supervisor(station):
    near = inspect(station, TIN, frames_of(station, StagedItem(TIN, {}, 1), {"front": ("EXP 20/12/2026",)}))
    d = near.record.decision
    assert d.disposition == Disposition.RETURN_TO_VENDOR and "CAT-NEAR-EXPIRY" in d.rules_fired, d.reasons
    assert near.text["date_verdict"] == "near_expiry" and near.text["days_left"] == 16
    undated = inspect(station, TIN, frames_of(station, StagedItem(TIN, {}, 1)))
    d = undated.record.decision
    assert d.disposition == Disposition.MANUAL_REVIEW and "T-DATE-UNREAD" in d.rules_fired


def test_ocr_that_cannot_start_sends_text_items_to_a_supervisor_and_decides_the_rest(station, monkeypatch):
    from vision import ocr

    reader = station.pipeline.text_reader
    monkeypatch.setattr(station.pipeline, "text_reader", ocr.TextReader())
    monkeypatch.setattr(ocr, "_REC_MODEL", "missing_rec.onnx")  # a broken install: the wheel lacks a model
    res = inspect(station, TIN, frames_of(station, StagedItem(TIN, {}, 1), {"front": ("EXP 14/02/2026",)}))
    d = res.record.decision
    assert d.disposition == Disposition.MANUAL_REVIEW and "T-OCR-UNAVAILABLE" in d.rules_fired
    assert res.text["state"] == "unavailable" and "reinstall" in res.text["detail"]
    bear = inspect(station, BEAR, frames_of(station, StagedItem(BEAR, {}, 8)))
    assert bear.text is None and "T-OCR-UNAVAILABLE" not in bear.record.decision.rules_fired
    assert reader is not station.pipeline.text_reader


def test_inspect_serial_option_and_json(tmp_path, sample_catalogue_dir, station):
    data = tmp_path / "data"
    shutil.copytree(sample_catalogue_dir, data / "sample_catalogue")
    paths = []
    for f in frames_of(station, StagedItem(EARBUDS, {}, 1167425779), {"front": ("S/N: SB9T3R6W2H",)}):
        paths.append(tmp_path / f"{f.view}.png")
        cv2.imwrite(str(paths[-1]), f.image)
    base = [sys.executable, "-m", "station.cli", "inspect", "--json", "--sku", EARBUDS, "--reason",
            "no_reason_7day", "--data-dir", str(data)]
    proc = subprocess.run([*base, "--serial", "SB4K7M2P9X", *map(str, paths)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [f["kind"] for f in out["findings"]] == ["serial_mismatch"] and out["disposition"] == "manual_review"
    assert out["text"]["expected_serial"] == "SB4K7M2P9X" and out["text"]["serials"][0]["serial"] == "SB9T3R6W2H"
    assert "text" in out["timings_ms"]
    bad = subprocess.run([*base, "--serial", "SB4K;DROP", *map(str, paths)], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "--serial" in bad.stderr and "Traceback" not in bad.stderr
