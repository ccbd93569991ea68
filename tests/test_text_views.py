"""Text where the catalogue says it is (issue 24): OCR reads only a SKU's text_views, an item whose text view was
not captured goes to a supervisor, lot codes are kept as evidence, and catalogue import refuses a text view the
station does not capture."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from datetime import date

import pytest

from station.app import boot
from station.config import StationConfig
from station.demo import print_label
from station.domain import Disposition, ReturnReason, ReturnRequest
from station.records import measurements_of
from vision.camera import StagedItem
from vision.catalogue import Catalogue, CatalogueError
from vision.ocr import TextLine, parse_lots, recognised_text

EARBUDS, TIN = "GAD-EARBUD-X2", "FORM-TIN-800"


@pytest.fixture(scope="module")
def station(tmp_path_factory, sample_catalogue_dir):
    root = tmp_path_factory.mktemp("text-views-station")
    shutil.copytree(sample_catalogue_dir, root / "data" / "sample_catalogue")
    station = boot(StationConfig.model_validate({"station": {"data_dir": str(root / "data")}}))
    station.pipeline.today = lambda: date(2026, 12, 4)
    yield station
    station.close()


def inspect(station, sku, printed, views=None, serial=None, order="TV"):
    station.camera.stage(StagedItem(sku, {}, 1167425779))
    frames = [station.camera.capture(v) for v in (views or station.config.station.views)]
    frames = [dataclasses.replace(f, image=print_label(f.image, printed[f.view])) if f.view in printed else f
              for f in frames]
    request = ReturnRequest(order, sku, ReturnReason.NO_REASON_7DAY, unit_code=f"U{order}", brand="b", serial=serial)
    return station.pipeline.inspect(request, frames, operator="test")


def test_the_sample_catalogue_says_where_the_text_is(station):
    assert station.pipeline.catalogue.text_views(EARBUDS) == ("front",)
    assert station.pipeline.catalogue.text_views("TOY-BEAR-S") is None


def test_ocr_reads_only_the_views_the_catalogue_names(station):
    other = next(v for v in station.config.station.views if v != "front")
    # The serial printed on a view the catalogue does not name is not read: unread, so a supervisor checks it.
    res = inspect(station, EARBUDS, {other: ("S/N: SB4K7M2P9X",)}, serial="SB4K7M2P9X", order="TV-1")
    assert res.text["text_views"] == ["front"] and res.text["serial_verdict"] == "unread"
    assert res.record.decision.disposition == Disposition.MANUAL_REVIEW
    # ... and on the named view it is read and matches; the record keeps which views were read
    res = inspect(station, EARBUDS, {"front": ("S/N: SB4K7M2P9X",)}, serial="SB4K7M2P9X", order="TV-2")
    assert res.text["serial_verdict"] == "match" and res.record.decision.disposition == Disposition.RESTOCK
    row = next(iter(station.store.rows("WHERE record_id = ?", (res.record.record_id,))))
    assert measurements_of(row)["text"]["text_views"] == ["front"]


def test_an_item_whose_text_view_was_not_captured_goes_to_a_supervisor(station):
    views = [v for v in station.config.station.views if v != "front"]
    res = inspect(station, TIN, {}, views=views, order="TV-3")
    d = res.record.decision
    assert d.disposition == Disposition.MANUAL_REVIEW and "T-TEXT-VIEW-MISSING" in d.rules_fired, d.reasons
    assert res.text == {"state": "view_missing", "text_views": ["front"]}


def test_a_lot_code_on_the_item_is_kept_with_the_date(station):
    res = inspect(station, TIN, {"front": ("LOT 6021B", "EXP 20/12/2027")}, order="TV-4")
    assert res.text["date_verdict"] == "ok"
    assert [lot["lot"] for lot in res.text["lots"]] == ["6021B"] and res.text["lots"][0]["view"] == "front"


def _line(text):
    return TextLine(text=text, score=0.99, view="front", box_xyxy=(10.0, 10.0, 200.0, 30.0))


@pytest.mark.parametrize("text, lots", [
    ("LOT 6021B", ["6021B"]), ("BATCH No. A7731", ["A7731"]), ("B: 22K19", ["22K19"]), ("L2389A", ["2389A"]),
    ("1.5 L", []), ("Size L 40", []), ("BB: 12/03/2027", []), ("Serial No. L4ND1EBAP6", []),
])
def test_lot_codes_are_read_after_their_label_and_nothing_else_is(text, lots):
    assert [lot.value for lot in parse_lots([_line(text)])] == lots


def test_full_width_forms_from_the_recogniser_are_read_as_lot_codes():
    # The PP-OCR dictionary is Chinese-first: on a European label it often answers with full-width colons.
    raw = "B\uff1a7769B"
    assert parse_lots([_line(raw)]) == []
    assert [lot.value for lot in parse_lots([_line(recognised_text(raw))])] == ["7769B"]
    assert recognised_text(" \uff2c\uff2f\uff34 6021B ") == "LOT 6021B"


def test_import_refuses_a_text_view_the_station_does_not_capture(tmp_path, sample_catalogue_dir):
    root = tmp_path / "cat"
    shutil.copytree(sample_catalogue_dir, root)
    path = root / "catalogue.csv"
    rows = list(csv.DictReader(path.open(newline="")))
    for row in rows:
        if row["sku"] == EARBUDS:
            row["text_views"] = "bottom"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert Catalogue.load(root).text_views(EARBUDS) == ("bottom",)  # without the station's views: as written
    with pytest.raises(CatalogueError, match="text_views"):
        Catalogue.load(root, views=["front", "side", "top"])
